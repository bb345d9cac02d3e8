"""Subject-mask timings on a 1562x1024 photo (the official test photos' size), CPU.

    python bench/bench_subject.py [--repeats 3] [--out bench/results_subject.md]

Random weights of the real sizes (timing only; no download):

* LDF (ResNet-50 + LDF heads, 25.2 M parameters): the official mask, ``fused2`` only (what
  :func:`magicbokeh.subject.ldf.saliency_mask` runs) vs the full six-output forward (the official
  code's), both at 352x352 with the output resized to the photo;
* SAM ViT-B (transformers' default ``SamConfig``, 93.7 M parameters): the first click on a photo
  (image encoder + mask decoder) vs a re-click (cached embedding: prompt encoder + mask decoder +
  upscaling to the photo), through :class:`magicbokeh.subject.sam.PointSegmenter`;
* the GrabCut fallback (no weights);
* the image encoders alone, timed alternately on the same 1024x1024 input: SAM ViT-B vs SAM 2.1
  Hiera-tiny (transformers' default ``Sam2Config``: Hiera 96 wide, stages 1-2-7-2, the
  ``facebook/sam2.1-hiera-tiny`` architecture, 31.4 M parameters), the candidate default.

The table is written between marker lines of ``--out``, so notes around it survive a rerun.

Each figure is the median of ``--repeats`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_depth import median_time  # noqa: E402  (one timing rule for the model benches)
from magicbokeh.subject import ldf  # noqa: E402
from magicbokeh.subject.grabcut import grabcut_subject  # noqa: E402
from magicbokeh.subject.ldf_net import LDF  # noqa: E402
from magicbokeh.subject.sam import PointSegmenter  # noqa: E402

W, H = 1562, 1024


def _paired(fa, fb, repeats: int) -> tuple[float, float]:
    """Medians of two functions timed alternately (a, b, a, b, ...), so shared-machine load hits both."""
    fa(), fb()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def _photo() -> np.ndarray:
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
    img = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (900, 500), 220, (220, 40, 30), -1)
    return img


def bench_ldf(photo: np.ndarray, repeats: int) -> dict:
    torch.manual_seed(0)
    net = LDF().eval()

    def full():
        with torch.inference_mode():
            out = net(ldf.preprocess(photo), (H, W))[5][0, 0]
        return torch.round(torch.sigmoid(out) * 255).to(torch.uint8)

    fused2, six = _paired(lambda: ldf.saliency_mask(net, photo), full, repeats)
    return {"params": sum(p.numel() for p in net.parameters()), "fused2": fused2, "six": six}


def _real_size_sam() -> PointSegmenter:
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    torch.manual_seed(0)
    seg = PointSegmenter("random-sam-vit-b")
    seg._model = SamModel(SamConfig()).eval()  # ViT-B: 768 wide, 12 layers, 1024x1024 input
    seg._processor = SamProcessor(SamImageProcessorPil())
    return seg


def bench_sam(photo: np.ndarray, repeats: int, first_repeats: int) -> dict:
    seg = _real_size_sam()
    params = sum(p.numel() for p in seg._model.parameters())

    def first():
        seg.clear()
        seg._embedding(photo, "photo")  # the encoder: what a first click adds
        return seg._decode(seg._cache["photo"], [(900.0, 500.0, 1)])

    if first_repeats > 0:
        first_s = median_time(first, first_repeats)
        seg.clear()
        seg._embedding(photo, "photo")
    else:  # re-click only: the decoder's cost does not depend on the embedding's values
        from PIL import Image

        from magicbokeh.subject.sam import _Embedding

        inputs = seg._processor(images=Image.fromarray(photo), return_tensors="pt")
        seg._cache["photo"] = _Embedding(torch.randn(1, 256, 64, 64), tuple(map(int, inputs["original_sizes"][0])),
                                         tuple(map(int, inputs["reshaped_input_sizes"][0])))
        first_s = float("nan")
    clicks = iter([[(900.0, 500.0, 1)], [(900.0, 500.0, 1), (1300.0, 200.0, 0)],
                   [(900.0, 500.0, 1), (950.0, 520.0, 1), (1300.0, 200.0, 0)]] * (repeats + 2))
    reclick_s = median_time(lambda: seg._decode(seg._cache["photo"], next(clicks)), repeats)
    # The public entry point on a cached photo (adds hashing the photo and the point checks).
    entry_s = median_time(lambda: seg.segment(photo, [[900, 500, 1], [1300, 200, 0]], key="photo"), repeats)
    return {"params": params, "first": first_s, "reclick": reclick_s, "entry": entry_s}


def bench_encoders(repeats: int) -> dict:
    """SAM ViT-B vs SAM 2.1 tiny image encoders on one 1024x1024 input, timed alternately."""
    from transformers import Sam2Config, Sam2Model, SamConfig, SamModel

    torch.manual_seed(0)
    vit_b, tiny = SamModel(SamConfig()).eval(), Sam2Model(Sam2Config()).eval()
    x = torch.randn(1, 3, 1024, 1024)

    def run(model):
        with torch.inference_mode():
            return model.get_image_embeddings(x)

    vb, t2 = _paired(lambda: run(vit_b), lambda: run(tiny), repeats)
    return {"vit_b": vb, "sam2_tiny": t2, "sam2_params": sum(p.numel() for p in tiny.parameters())}


START, END = "<!-- bench_subject: start -->", "<!-- bench_subject: end -->"


def write_block(path: Path, text: str) -> None:
    """Replace the text between the markers of ``path`` (append it when there are none)."""
    block = f"{START}\n{text}\n{END}"
    old = path.read_text() if path.is_file() else ""
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = block + "\n" + old
    path.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sam-first-repeats", type=int, default=2,
                    help="runs of the SAM first click (~1 min each on 2 cores); 0 = time only the SAM re-click")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results_subject.md")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    photo = _photo()
    r_ldf = bench_ldf(photo, args.repeats) if args.sam_first_repeats > 0 else {"params": 0, "fused2": float("nan"), "six": float("nan")}
    r_sam = bench_sam(photo, args.repeats, args.sam_first_repeats)
    gc_s = median_time(lambda: grabcut_subject(photo, [(900.0, 500.0, 1)]), args.repeats)
    enc = bench_encoders(max(args.sam_first_repeats, 1))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## Subject masks: LDF, SAM first click and re-click, GrabCut (`bench/bench_subject.py`)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores "
        f"(torch threads {torch.get_num_threads()}), torch {torch.__version__}, load average {load:.1f} "
        f"at the end. Photo {W}x{H}, random weights of the real sizes, fp32, median of {args.repeats} runs "
        f"after a warm-up (SAM first click: {args.sam_first_repeats} runs; LDF's two paths timed alternately). "
        f"Command: `.venv/bin/python bench/bench_subject.py --repeats {args.repeats}`.",
        "",
        "| step | params | time | note |",
        "|---|---|---|---|",
        f"| LDF official mask (`fused2` only) | {r_ldf['params'] / 1e6:.1f} M | {r_ldf['fused2']:.2f} s | "
        f"six-output forward as the official code: {r_ldf['six']:.2f} s (ratio {r_ldf['fused2'] / r_ldf['six']:.2f}) |",
        f"| SAM ViT-B first click (encoder + decoder) | {r_sam['params'] / 1e6:.1f} M | {r_sam['first']:.2f} s | once per photo |",
        f"| SAM ViT-B re-click (cached embedding) | | {r_sam['reclick']:.3f} s | "
        f"{r_sam['first'] / r_sam['reclick']:.0f}x faster than the first click; target <= 0.5 s |",
        f"| SAM re-click through `PointSegmenter.segment` | | {r_sam['entry']:.3f} s | adds the 8-bit conversion and point checks |",
        f"| GrabCut fallback (no weights) | 0 | {gc_s:.2f} s | works at 512 px long side |",
        f"| encoder alone: SAM ViT-B | 93.7 M | {enc['vit_b']:.2f} s | timed alternately with the next row |",
        f"| encoder alone: SAM 2.1 Hiera-tiny | {enc['sam2_params'] / 1e6:.1f} M | {enc['sam2_tiny']:.2f} s | "
        f"ratio to ViT-B {enc['vit_b'] / enc['sam2_tiny']:.1f}x (not the default: see docs/subject-focus.md) |",
    ]
    text = "\n".join(lines)
    print(text)
    write_block(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
