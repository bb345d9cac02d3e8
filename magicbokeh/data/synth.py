"""Synthetic bokeh pairs: layered scenes, thin-lens ground truth, degraded all-in-focus inputs.

Usage::

    python -m magicbokeh.data.synth --out data/synth --num 2000 --seed 0 \\
        [--size 512] [--backgrounds DIR] [--foregrounds DIR] [--workers 8 | --ray auto]

Every sample depends only on ``(seed, index)`` (``np.random.default_rng([seed, index])``), so any
shard regenerates alone and a rerun is byte-identical. Files are written atomically, the meta file
last: a sample whose ``meta/ID.json`` exists is complete and is skipped on a rerun, which is how an
interrupted generation is resumed. The folder layout (aif/, disparity/, bokeh/, lq/, layers/,
meta/, manifest.jsonl) and the meta keys are declared in :mod:`magicbokeh.data.layout`; ``lq/`` holds
the all-in-focus image degraded by ``magicbokeh.degradation.degrade`` (Real-ESRGAN x4, same size).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ..entrypoint import configure_logging, run_command
from ..errors import MagicBokehError
from ..publish import publish_bytes, publish_file
from ..settings import K_RANGE
from . import layout
from .layout import KINDS, MANIFEST, sample_id
from .raytrace import Layer, composite_sharp, render_thin_lens
from .scenes import PROCEDURAL, VISIBLE_ALPHA, Scene, assemble_scene, list_backgrounds, list_foregrounds

logger = logging.getLogger(__name__)

#: Smallest --size: the Real-ESRGAN x4 degradation needs 32 px sides.
MIN_SIZE = 32
MAX_SIZE = 4096
#: Degradation of the all-in-focus input (the paper's Real-ESRGAN x4 pipeline).
LQ_PRESET = "realesrgan"
LQ_SCALE = 4.0


@dataclass
class Sample:
    """One synthetic pair.

    Attributes:
        aif: (H, W, 3) float32 sRGB in [0, 1], all in focus.
        disparity: (H, W) float32 visible disparity, 1 = near; min 0, max 1.
        bokeh: (H, W, 3) float32 sRGB in [0, 1], the thin-lens render.
        layers: complete layers, far -> near.
        k: blur strength in [0, 32] (CoC radius ``k * |d - f|`` px).
        focus_disparity: focal plane disparity in [0, 1].
        layer_disparities: per layer, a float (fronto-parallel) or ``[min, max]`` (slanted background).
        sources: per layer, the file name relative to its folder, or "procedural".
    """

    aif: np.ndarray
    disparity: np.ndarray
    bokeh: np.ndarray
    layers: list[Layer]
    k: float
    focus_disparity: float
    layer_disparities: list[Any]
    sources: list[str]


def _sources(backgrounds, foregrounds, size: int):
    bgs = list_backgrounds(str(Path(backgrounds).expanduser().resolve()), int(size)) if backgrounds else None
    fgs = list_foregrounds(str(Path(foregrounds).expanduser().resolve()))[0] if foregrounds else None
    return bgs, fgs


def _check_size(size: int) -> int:
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise MagicBokehError(f"--size must be an integer number of pixels; got {size!r}.") from None
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise MagicBokehError(f"--size must be in [{MIN_SIZE}, {MAX_SIZE}] px; got {size}.")
    return size


def make_sample(seed: int, index: int, *, size: int = 512, backgrounds=None, foregrounds=None) -> Sample:
    """Build sample ``index`` of the dataset seeded by ``seed`` (deterministic in both).

    Args:
        seed, index: non-negative integers; ``np.random.default_rng([seed, index])`` draws everything.
        size: output side in pixels (square), in [32, 4096].
        backgrounds, foregrounds: folders of photos / cut-outs, or None for procedural content.
    """
    size = _check_size(size)
    if int(seed) < 0 or int(index) < 0:
        raise MagicBokehError(f"seed and index must be non-negative; got seed={seed}, index={index}.")
    bgs, fgs = _sources(backgrounds, foregrounds, size)
    rng = np.random.default_rng([int(seed), int(index)])

    # 1. Scene, with the visible disparity spanning [0, 1].
    scene: Scene = assemble_scene(rng, size, backgrounds=bgs, foregrounds=fgs)

    # 2. Focus on the background or one of the foregrounds (equally likely), at a visible pixel.
    target = int(rng.integers(len(scene.layers)))
    visible = _visible_owner(scene.layers) == target
    if not visible.any():  # a foreground hidden behind the other one: focus on the nearest instead
        target = int(_visible_owner(scene.layers).max())
        visible = _visible_owner(scene.layers) == target
    ys, xs = np.nonzero(visible)
    pick = int(rng.integers(len(ys)))
    focus = float(scene.disparity[ys[pick], xs[pick]])
    k = float(rng.uniform(*K_RANGE))

    # 3. Render.
    aif = composite_sharp(scene.layers)
    bokeh = render_thin_lens(scene.layers, focus, k)
    layer_disp = [
        [float(np.min(layer.disparity)), float(np.max(layer.disparity))]
        if np.ndim(layer.disparity) else float(layer.disparity)
        for layer in scene.layers
    ]
    return Sample(aif, scene.disparity, bokeh, scene.layers, k, focus, layer_disp, scene.sources)


def _visible_owner(layers: Sequence[Layer]) -> np.ndarray:
    """(H, W) index of the layer that owns each pixel of the visible disparity map."""
    owner = np.zeros(layers[0].rgba.shape[:2], np.int32)
    for i, layer in enumerate(layers[1:], start=1):
        owner[layer.rgba[..., 3] > VISIBLE_ALPHA] = i
    return owner


def lq_seed(seed: int, index: int) -> int:
    """Degradation seed for sample ``index``: derived from (seed, index), independent of the scene draws."""
    return int(np.random.SeedSequence([int(seed), int(index), 0x4C51]).generate_state(1)[0])


def default_degrade(aif: np.ndarray, seed: int) -> np.ndarray:
    """Real-ESRGAN x4 degradation of the all-in-focus image, at the same size."""
    from ..degradation import degrade  # lazy: keeps `import magicbokeh.data.synth` light

    return degrade(aif, preset=LQ_PRESET, scale=LQ_SCALE, seed=int(seed))


# --------------------------------------------------------------------------------------------------
# Writing


def _write_png(path: Path, array: np.ndarray) -> None:
    """8-bit PNG of (H, W, 3) sRGB or (H, W, 4) RGBA floats in [0, 1], written atomically."""
    out = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    out = out[..., [2, 1, 0, 3]] if out.shape[2] == 4 else out[..., ::-1]  # OpenCV wants BGR(A)
    with publish_file(path) as tmp:  # the temporary keeps the real extension (OpenCV needs it)
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(out)):
            raise MagicBokehError(f"cannot write {str(path)!r}; check the disk space and permissions.")


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, np.float32), allow_pickle=False)
    return buf.getvalue()


def _meta_bytes(meta: dict) -> bytes:
    return (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode()


def _manifest_row(meta: dict) -> dict:
    row = dict(meta)
    row.update(layout.sample_paths(meta[layout.META_INDEX], len(meta[layout.META_SOURCES])))
    return row


def write_sample(out_dir: str | Path, seed: int, index: int, *, size: int = 512, backgrounds=None,
                 foregrounds=None, degrade_fn: Callable[[np.ndarray, int], np.ndarray] | None = None) -> dict:
    """Make sample ``index`` and write its files (meta last); returns its meta dict."""
    out = Path(out_dir)
    sid = sample_id(index)
    sample = make_sample(seed, index, size=size, backgrounds=backgrounds, foregrounds=foregrounds)
    lq = (degrade_fn or default_degrade)(sample.aif, lq_seed(seed, index))
    for kind in KINDS:  # leftovers of a run killed mid-write
        (out / kind).mkdir(parents=True, exist_ok=True)
        for stale in (out / kind).glob(f".{sid}*.tmp*"):
            stale.unlink(missing_ok=True)
    _write_png(layout.file_path(out, layout.AIF, sid), sample.aif)
    publish_bytes(layout.file_path(out, layout.DISPARITY, sid), _npy_bytes(sample.disparity))
    _write_png(layout.file_path(out, layout.BOKEH, sid), sample.bokeh)
    _write_png(layout.file_path(out, layout.LQ, sid), np.asarray(lq, np.float32))
    for i, layer in enumerate(sample.layers):
        _write_png(out / layout.layer_path(sid, i), layer.rgba)
    meta = {
        layout.META_ID: sid,
        layout.META_SEED: int(seed),
        layout.META_INDEX: int(index),
        layout.META_SIZE: int(sample.aif.shape[0]),
        layout.META_K: sample.k,
        layout.META_FOCUS: sample.focus_disparity,
        layout.META_LAYER_DISPARITIES: sample.layer_disparities,
        layout.META_SOURCES: sample.sources,
        layout.META_DEGRADATION: (
            {"preset": LQ_PRESET, "scale": LQ_SCALE, "seed": lq_seed(seed, index)}
            if degrade_fn is None
            else {"preset": "custom", "seed": lq_seed(seed, index)}
        ),
    }
    publish_bytes(layout.file_path(out, layout.META, sid), _meta_bytes(meta))  # last: marks the sample complete
    return meta


def _work(item: tuple) -> tuple[dict, bool]:
    """map_indexed worker: (meta, reused) for one index; reuses a finished sample."""
    out_dir, seed, index, size, backgrounds, foregrounds, degrade_fn = item
    meta_path = layout.file_path(out_dir, layout.META, sample_id(index))
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            logger.warning("meta %s is unreadable; regenerating sample %d", meta_path.name, index)
        else:
            if meta.get(layout.META_SEED) != seed or meta.get(layout.META_SIZE) != size:
                raise MagicBokehError(
                    f"{out_dir} already holds sample {index} made with seed {meta.get(layout.META_SEED)} and "
                    f"size {meta.get(layout.META_SIZE)}, not seed {seed} and size {size}; use a new --out folder."
                )
            return meta, True
    return write_sample(out_dir, seed, index, size=size, backgrounds=backgrounds, foregrounds=foregrounds,
                        degrade_fn=degrade_fn), False


def _prepare_out(out_dir: str | Path) -> Path:
    out = Path(out_dir).expanduser()
    try:
        for kind in KINDS:
            (out / kind).mkdir(parents=True, exist_ok=True)
        probe = out / layout.META / f".probe{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MagicBokehError(
            f"cannot write to output folder {str(out)!r} ({exc.strerror or exc}); choose a writable --out."
        ) from None
    return out


def generate(out_dir, num: int, seed: int, *, size: int = 512, backgrounds=None, foregrounds=None,
             workers: int = 1, ray_address: str | None = None, progress: bool = True,
             degrade_fn=None) -> list[dict]:
    """Generate samples ``0 .. num - 1`` under ``out_dir`` (resuming a partial run); see the module doc.

    Args:
        out_dir: output folder (created).
        num: number of samples, >= 1.
        seed: dataset seed, >= 0.
        size: square side in pixels, in [32, 4096].
        backgrounds: folder of background photos (each >= size on both sides), or None = procedural.
        foregrounds: folder of RGBA cut-outs or images/ + mattes/, or None = procedural.
        workers: local processes (ignored with ``ray_address``).
        ray_address: ``"auto"``, ``"local"`` or ``"ray://HOST:PORT"``: one Ray task per sample.
        progress: show a progress bar on stderr.
        degrade_fn: ``fn(aif, seed) -> lq`` (same-size float32 [0, 1]) replacing the Real-ESRGAN x4
            default; must be a picklable module-level function for workers > 1 or Ray.

    Returns:
        Manifest rows (meta plus relative file paths), in index order; also written to manifest.jsonl.
    """
    # 1. Check everything before any work, so a bad option fails in a second, not an hour in.
    try:
        num, seed = int(num), int(seed)
    except (TypeError, ValueError):
        raise MagicBokehError("--num and --seed must be integers.") from None
    if num < 1:
        raise MagicBokehError(f"--num must be at least 1; got {num}.")
    if seed < 0:
        raise MagicBokehError(f"--seed must be a non-negative integer; got {seed}.")
    size = _check_size(size)
    backgrounds = str(Path(backgrounds).expanduser().resolve()) if backgrounds else None
    foregrounds = str(Path(foregrounds).expanduser().resolve()) if foregrounds else None
    bgs, fgs = _sources(backgrounds, foregrounds, size)
    out = _prepare_out(out_dir)
    logger.info(
        "generating %d samples of %dx%d into %s (backgrounds: %s, foregrounds: %s)", num, size, size, out,
        f"{len(bgs)} photos" if bgs else PROCEDURAL, f"{len(fgs)} cut-outs" if fgs else PROCEDURAL,
    )

    # 2. One task per index; finished samples are read back, not redone.
    from ..parallel import map_indexed

    items = [(str(out), seed, i, size, backgrounds, foregrounds, degrade_fn) for i in range(num)]
    results = map_indexed(
        _work, items, workers=workers, ray_address=ray_address, desc="synth", progress=progress
    )
    reused = sum(1 for _, was in results if was)
    logger.info("%d new samples, %d already complete", num - reused, reused)

    # 3. Manifest from the meta files, index order.
    rows = [_manifest_row(meta) for meta, _ in results]
    publish_bytes(out / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
    return rows


# --------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m magicbokeh.data.synth",
        description="Generate synthetic bokeh training pairs (ray-traced thin-lens ground truth).",
    )
    p.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    p.add_argument("--num", type=int, required=True, help="number of samples (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (>= 0); sample i uses rng([seed, i])")
    p.add_argument("--size", type=int, default=512, help=f"square side in pixels [{MIN_SIZE}, {MAX_SIZE}]")
    p.add_argument("--backgrounds", help="folder of background photos, each >= --size (default: procedural)")
    p.add_argument(
        "--foregrounds", help="folder of RGBA PNG cut-outs, or images/ + mattes/ (default: procedural)"
    )
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto, local, or ray://HOST:PORT")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    configure_logging(2 if args.verbose else 1)

    def work() -> int:
        rows = generate(args.out, args.num, args.seed, size=args.size, backgrounds=args.backgrounds,
                        foregrounds=args.foregrounds, workers=args.workers, ray_address=args.ray,
                        progress=not args.no_progress)
        print(f"wrote {len(rows)} samples to {args.out} (manifest.jsonl)")
        return 0

    return run_command(work, verbose=int(args.verbose))


if __name__ == "__main__":
    sys.exit(main())
