"""convert-dadepth never loses a user's file: foreign OUT_DIRs, '.', the source's folder, NaN weights.

The checkpoints are tiny Depth Anything V2 models built locally and saved in the upstream layout
(``{"model": {"module.<name>": tensor}}``), like the official ``DAdepth.pth``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from magicbokeh.cli import main as cli_main
from magicbokeh.depth.convert_dadepth import load_config, qkv_keys, rename_keys


def _upstream(hf_folder: Path) -> dict[str, torch.Tensor]:
    """transformers names -> upstream names (fused qkv), the inverse of the converter's key map."""
    from safetensors.torch import load_file

    config = load_config(hf_folder)
    hf = load_file(str(hf_folder / "model.safetensors"))
    out = {src: hf[dst] for src, dst in rename_keys(config)}
    for src, dst in qkv_keys(config):
        prefix, param = dst.split("|")
        out[src] = torch.cat([hf[f"{prefix}.{n}.{param}"] for n in ("query", "key", "value")], dim=0)
    return {"module." + k: v for k, v in out.items()}


@pytest.fixture
def upstream_pth(tiny_depth_model: Path, tmp_path: Path) -> Path:
    path = tmp_path / "src" / "student.pth"
    path.parent.mkdir()
    torch.save({"model": _upstream(tiny_depth_model)}, path)
    return path


def _convert(pth: Path, out: Path | str, config: Path, *extra: str) -> int:
    return cli_main(["-q", "convert-dadepth", str(pth), str(out), "--config", str(config / "config.json"), *extra])


def test_a_folder_of_other_files_is_refused_and_kept(upstream_pth, tiny_depth_model, tmp_path, capsys) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    assert _convert(upstream_pth, out, tiny_depth_model) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and "holiday.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]
    assert (out / "holiday.jpg").read_bytes() == b"precious"
    # With --overwrite the user asked for it: the folder becomes the conversion.
    assert _convert(upstream_pth, out, tiny_depth_model, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]


def test_an_earlier_conversion_is_replaced_without_overwrite(upstream_pth, tiny_depth_model, tmp_path) -> None:
    out = tmp_path / "converted"
    assert _convert(upstream_pth, out, tiny_depth_model) == 0
    first = (out / "model.safetensors").read_bytes()
    assert _convert(upstream_pth, out, tiny_depth_model) == 0
    assert (out / "model.safetensors").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_current_folder_and_source_folder_are_always_refused(
    upstream_pth, tiny_depth_model, tmp_path, monkeypatch, capsys, overwrite
) -> None:
    src_dir = upstream_pth.parent
    (src_dir / "notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in src_dir.iterdir()}
    monkeypatch.chdir(src_dir)
    for out in (".", str(src_dir), str(src_dir.parent)):
        assert _convert(upstream_pth, out, tiny_depth_model, *overwrite) == 2
        assert "refusing to replace" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in src_dir.iterdir()} == before


def test_nan_or_inf_weights_are_refused(tiny_depth_model, tmp_path, capsys) -> None:
    state = _upstream(tiny_depth_model)
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    for bad in (float("nan"), float("inf")):
        broken = dict(state)
        broken[name] = broken[name].clone()
        broken[name].view(-1)[0] = bad
        pth = tmp_path / "diverged.pth"
        torch.save({"model": broken}, pth)
        assert _convert(pth, tmp_path / "out", tiny_depth_model) == 2
        err = capsys.readouterr().err
        assert "NaN or infinite" in err and name[len("module."):] in err
        assert not (tmp_path / "out").exists()


def test_legacy_format_pth_converts(upstream_pth, tiny_depth_model, tmp_path) -> None:
    """torch.save(..., _use_new_zipfile_serialization=False) files cannot be mmap'ed; they still convert."""
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(upstream_pth, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert _convert(legacy, tmp_path / "a", tiny_depth_model) == 0
    assert _convert(upstream_pth, tmp_path / "b", tiny_depth_model) == 0
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_foreign_folder_is_refused_before_the_hub_is_asked(tmp_path, monkeypatch, capsys) -> None:
    """'dadepth' names a Hub file: the folder check comes first, so nothing is downloaded for a refusal."""
    import magicbokeh.depth.convert_dadepth as conv

    def no_hub(src):
        raise AssertionError("the Hub was asked before the output folder was checked")

    monkeypatch.setattr(conv, "resolve_checkpoint_file", no_hub)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.pdf").write_bytes(b"%PDF")
    assert cli_main(["-q", "convert-dadepth", "dadepth", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "thesis.pdf").read_bytes() == b"%PDF"
