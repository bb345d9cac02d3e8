"""DA depth: the upstream -> transformers key map, safe reading, the converter and its cache.

The official fixture (``../shared/testdata/dadepth-official-tiny``) is a Depth Anything V2 built
from the official classes and saved like ``DAdepth.pth``; tests that need it skip without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from magicbokeh.cli import main as cli_main
from magicbokeh.depth.convert_dadepth import (
    convert_dadepth,
    convert_state_dict,
    converted_folder,
    load_config,
    qkv_keys,
    read_upstream_checkpoint,
    rename_keys,
)
from magicbokeh.errors import MagicBokehError

SHARED_TINY = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "dadepth-official-tiny"


@pytest.fixture
def official_tiny() -> Path:
    if not (SHARED_TINY / "dadepth_tiny.pth").is_file():
        pytest.skip("../shared/testdata/dadepth-official-tiny is not present in this checkout")
    return SHARED_TINY


def _to_upstream(hf_state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Invert the key map: transformers file names -> upstream names (fused qkv)."""
    out = {src: hf_state[dst] for src, dst in rename_keys(config)}
    for src, dst in qkv_keys(config):
        prefix, param = dst.split("|")
        out[src] = torch.cat([hf_state[f"{prefix}.{n}.{param}"] for n in ("query", "key", "value")], dim=0)
    return out


def _save_upstream(path: Path, hf_folder: Path) -> None:
    from safetensors.torch import load_file

    config = load_config(hf_folder)
    upstream = _to_upstream(load_file(str(hf_folder / "model.safetensors")), config)
    torch.save({"model": {"module." + k: v for k, v in upstream.items()}, "optimizer": {}, "epoch": 1}, path)


def test_key_map_round_trip_gives_the_same_model(tiny_depth_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForDepthEstimation

    pth = tmp_path / "student.pth"
    _save_upstream(pth, tiny_depth_model)
    out = convert_dadepth(pth, tmp_path / "converted", config=tiny_depth_model / "config.json")
    ref = AutoModelForDepthEstimation.from_pretrained(tiny_depth_model).eval()
    new = AutoModelForDepthEstimation.from_pretrained(out).eval()
    x = torch.randn(1, 3, 28, 42, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ref(pixel_values=x).predicted_depth, new(pixel_values=x).predicted_depth
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]


def test_key_map_covers_vitl_exactly() -> None:
    from magicbokeh.depth.convert_dadepth import vitl_config

    config = vitl_config()
    pairs = rename_keys(config) + [(s, d) for s, d in qkv_keys(config)]
    sources = [s for s, _ in pairs]
    assert len(sources) == len(set(sources)) == 407  # official-model.md §6: 407 upstream tensors
    targets = [d for _, d in rename_keys(config)] + [d for _, d in qkv_keys(config)]
    assert len(targets) == len(set(targets))


def test_official_checkpoint_converts_and_matches_the_official_forward(official_tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForDepthEstimation

    out = tmp_path / "dadepth-tiny"
    assert cli_main(["convert-dadepth", str(official_tiny / "dadepth_tiny.pth"), str(out),
                     "--config", str(official_tiny / "config.json"), "-q"]) == 0
    # A plain transformers load (no magicbokeh patch) reproduces the square, un-interpolated case.
    model = AutoModelForDepthEstimation.from_pretrained(out).eval()
    inputs = np.load(official_tiny / "inputs.npz")
    expected = np.load(official_tiny / "official_outputs.npz")
    with torch.no_grad():
        got = model(pixel_values=torch.from_numpy(inputs["square_518"].astype(np.float32))).predicted_depth[0]
    ref = expected["square_518"]
    assert np.abs(got.numpy() - ref).max() / np.abs(ref).max() <= 1e-4


def test_without_config_the_vitl_default_names_missing_keys(official_tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(MagicBokehError, match=r"280 missing key\(s\): pretrained\.blocks\.\d+.*--config"):
        convert_dadepth(official_tiny / "dadepth_tiny.pth", out)
    assert not out.exists()
    assert cli_main(["convert-dadepth", str(official_tiny / "dadepth_tiny.pth"), str(out), "-q"]) == 2


def test_config_that_does_not_match_the_weights_names_the_tensor(official_tiny: Path, tmp_path: Path) -> None:
    cfg = json.loads((official_tiny / "config.json").read_text())
    cfg["fusion_hidden_size"] = 24  # same keys, other shapes
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous content")
    with pytest.raises(MagicBokehError, match=r"do not match the config.*(neck|head)"):
        convert_dadepth(official_tiny / "dadepth_tiny.pth", out, config=bad, overwrite=True)
    # The previous folder is untouched and no half-written conversion is left beside it.
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "DAdepth.pth"
    torch.save({"model": {"module.x": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(MagicBokehError, match=r"refused to load DAdepth\.pth: it contains code.*system"):
        read_upstream_checkpoint(path)
    assert not marker.exists()
    # Protocol 2 spells builtins the Python 2 way; the allow-list refuses those too.
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": {"module.x": torch.zeros(1)}, "p": _Exploit(marker)}, legacy, pickle_protocol=2)
    with pytest.raises(MagicBokehError, match="contains code"):
        read_upstream_checkpoint(legacy)
    assert not marker.exists()


def test_truncated_and_empty_files_give_clear_errors(official_tiny: Path, tmp_path: Path) -> None:
    data = (official_tiny / "dadepth_tiny.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MagicBokehError, match="truncated or not a torch checkpoint"):
        read_upstream_checkpoint(cut)
    empty = tmp_path / "empty.pth"
    torch.save({"model": {}}, empty)
    with pytest.raises(MagicBokehError, match="no state dict"):
        read_upstream_checkpoint(empty)


def test_unexpected_keys_are_named(official_tiny: Path) -> None:
    state = read_upstream_checkpoint(official_tiny / "dadepth_tiny.pth")
    assert not any(k.startswith("module.") for k in state)
    state["depth_head.extra.weight"] = torch.zeros(1)
    with pytest.raises(MagicBokehError, match=r"1 unexpected key\(s\): depth_head\.extra\.weight"):
        convert_state_dict(state, load_config(official_tiny / "config.json"))


def test_conversion_is_cached_and_later_loads_read_no_pickle(
    official_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import magicbokeh.depth.convert_dadepth as dadepth

    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    pth = tmp_path / "DAdepth.pth"
    pth.write_bytes((official_tiny / "dadepth_tiny.pth").read_bytes())
    first = converted_folder(pth, config=official_tiny / "config.json")
    assert first.is_relative_to(tmp_path / "cache" / "depth")

    def no_pickle(path):
        raise AssertionError("the pickle was read again")

    monkeypatch.setattr(dadepth, "read_upstream_checkpoint", no_pickle)
    assert converted_folder(pth, config=official_tiny / "config.json") == first
    os.utime(pth, ns=(1, 1))  # a replaced file is converted again
    with pytest.raises(AssertionError, match="read again"):
        converted_folder(pth, config=official_tiny / "config.json")


def _fake_hub_cache(root: Path, repo: str, filename: str, data: bytes) -> None:
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snap = folder / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(data)


def test_dadepth_name_resolves_through_the_hub_cache(
    official_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from magicbokeh import depth

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    est = depth.DepthAnythingEstimator("dadepth")
    assert "DA depth not available" in est.unavailable_reason()
    assert "LinxiaoShi/Magicbokeh/DAdepth.pth" in est.unavailable_reason()
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "LinxiaoShi/Magicbokeh", "DAdepth.pth", (official_tiny / "dadepth_tiny.pth").read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    assert est.unavailable_reason() is None
    # The cached file is the tiny model, not ViT-L: reading it proves the name resolved to it.
    with pytest.raises(MagicBokehError, match="does not match the Depth Anything V2 config"):
        est(np.zeros((32, 32, 3), np.float32))


def test_automatic_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from magicbokeh import depth
    from magicbokeh.depth import sources

    monkeypatch.delenv("MAGICBOKEH_DEPTH_MODEL", raising=False)
    monkeypatch.setattr(sources, "_dadepth_weights_present", lambda: True)
    monkeypatch.setattr(sources, "_cuda_available", lambda device=None: False)
    source, why = depth.choose_depth_model(None)
    assert source == depth.DEPTH_MODELS["small"].source and "CPU" in why
    monkeypatch.setattr(sources, "_cuda_available", lambda device=None: device != "cpu")
    monkeypatch.setattr(sources, "_dadepth_weights_present", lambda: False)
    assert depth.choose_depth_model("auto")[0] == depth.DEPTH_MODELS["small"].source
    monkeypatch.setattr(sources, "_dadepth_weights_present", lambda: True)
    assert depth.choose_depth_model("auto") == ("dadepth", "automatic: GPU and DA depth weights present")
    assert depth.choose_depth_model("auto", device="cpu")[0] == depth.DEPTH_MODELS["small"].source
    # A front end's --depth-model is the automatic choice, over the environment, under an explicit spec.
    monkeypatch.setenv("MAGICBOKEH_DEPTH_MODEL", "base")
    assert depth.choose_depth_model(None, configured="large") == (depth.DEPTH_MODELS["large"].source,
                                                                 "from --depth-model")
    assert depth.choose_depth_model("small", configured="large")[0] == depth.DEPTH_MODELS["small"].source
    monkeypatch.setenv("MAGICBOKEH_DEPTH_MODEL", "large")
    assert depth.choose_depth_model(None)[0] == depth.DEPTH_MODELS["large"].source
    assert depth.choose_depth_model("base")[0] == depth.DEPTH_MODELS["base"].source
