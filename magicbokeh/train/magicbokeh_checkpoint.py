"""Checkpoints of the MagicBokeh trainer: what is saved, how a run resumes, and the final export.

``checkpoint-N/`` holds the trained weights (safetensors + config.json, loadable with
``--checkpoint``), ``resume/`` (one AdamW state per phase as safetensors + JSON, and
``trainer_state.json``) and, with ``train.ema``, ``ema/``. Folders are published atomically
(``train.common.atomic_checkpoint``, ``magicbokeh.publish``). No pickle is written or read.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import MagicBokehError
from .resume_files import damaged_checkpoint, read_state_json
from ..publish import publish_folder
from .magicbokeh_config import Config

logger = logging.getLogger(__name__)

RESUME_DIR = "resume"
EMA_DIR = "ema"
FINAL_DIR = "final"
TRAINER_STATE = "trainer_state.json"


def lora_ranks(config: Config) -> dict[str, Any]:
    """The adapter ranks a checkpoint must share with the config that resumes it."""
    m = config.model
    return {"rank_unet": m.rank_unet, "rank_vae": m.rank_vae, "rank_attn": m.rank_attn}


#: Data options that change the samples, with the behaviour of runs saved before the option existed.
DATA_KEYS_BEFORE_OPTION: dict[str, Any] = {"bokeh_input": "lq", "sharpen_target": False}


def check_resume(config: Config, ckpt_dir: Path) -> dict[str, Any]:
    """The trainer state of ``ckpt_dir``; raises when ``config`` cannot continue it exactly."""
    path = ckpt_dir / RESUME_DIR / TRAINER_STATE
    if not path.is_file():
        raise MagicBokehError(f"{ckpt_dir} has no {RESUME_DIR}/{TRAINER_STATE}; it cannot be resumed "
                              "(use a new --output folder, or init_from to fine-tune it).")
    state = read_state_json(path)
    saved = state.get("ranks", {})
    for key, value in lora_ranks(config).items():
        if saved.get(key) != value:
            raise MagicBokehError(
                f"{ckpt_dir} was trained with model.{key}={saved.get(key)} but the config sets "
                f"model.{key}={value}; resume with the same ranks or use a new --output folder."
            )
    old_cfg = state.get("config", {})
    for section, key in (("model", "conditioning_embedding_out_channels"), ("data", "resolution")):
        before = old_cfg.get(section, {}).get(key)
        now = getattr(getattr(config, section), key)
        if before != now:
            raise MagicBokehError(f"{ckpt_dir} was trained with {section}.{key}={before} but the config "
                                  f"sets {now}; resume with the same value or use a new --output folder.")
    for key, legacy in DATA_KEYS_BEFORE_OPTION.items():
        before = old_cfg.get("data", {}).get(key, legacy)
        now = getattr(config.data, key)
        if before != now:
            logger.warning("resuming %s with data.%s=%s (it was trained with %s): the continuation is not exact",
                           ckpt_dir, key, now, before)
    if old_cfg.get("base") != config.base:
        logger.warning("resuming %s with base %s (it was trained on %s)", ckpt_dir, config.base, old_cfg.get("base"))
    return state


def save_optimizers(folder: Path, opts: dict[str, Any], phase_names: dict[str, list[str]]) -> None:
    """Each phase's optimizer state as ``optimizer-PHASE.safetensors`` (tensors by parameter name) + JSON."""
    from safetensors.torch import save_file

    for p, opt in opts.items():
        sd = opt.state_dict()
        names = phase_names[p]
        tensors = {}
        for idx, entry in sd["state"].items():
            for key, value in entry.items():
                tensors[f"{names[idx]}/{key}"] = value.detach().cpu().contiguous()
        groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
        save_file(tensors, str(folder / f"optimizer-{p}.safetensors"))
        (folder / f"optimizer-{p}.json").write_text(json.dumps({"names": names, "param_groups": groups}))


def load_optimizers(opts: dict[str, Any], folder: Path, phase_names: dict[str, list[str]]) -> None:
    """Restore what :func:`save_optimizers` wrote; raises when the parameters differ or a file is damaged."""
    for p, opt in opts.items():
        with damaged_checkpoint(folder, f"{p} optimizer state"):
            _load_optimizer(opt, folder, p, phase_names[p])


def _load_optimizer(opt: Any, folder: Path, p: str, names: list[str]) -> None:
    """One phase of :func:`load_optimizers`."""
    from safetensors.torch import load_file

    meta = read_state_json(folder / f"optimizer-{p}.json")
    if meta["names"] != names:
        raise MagicBokehError(f"{folder}: the {p} optimizer was saved for other parameters; "
                              "the checkpoint does not match this configuration.")
    tensors = load_file(str(folder / f"optimizer-{p}.safetensors"))
    index = {n: i for i, n in enumerate(meta["names"])}
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        name, _, field_name = key.rpartition("/")
        state.setdefault(index[name], {})[field_name] = value
    groups = [{**g, "params": list(range(len(meta["names"])))} for g in meta["param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def ema_from(net: Any, ckpt: Any) -> dict[str, Any]:
    """EMA tensors of a checkpoint's ``ema/`` folder, in the dtypes of ``net``'s parameters."""
    from .magicbokeh_model import trained_tensors

    params = dict(net.named_parameters())
    return {n: v.to(params[n].dtype).clone() for n, v in trained_tensors(net, ckpt, source="ema").items()}


class CheckpointWriter:
    """Writes the weights, checkpoints and final export of one run (main process only, except
    :meth:`save_checkpoint`, which every process enters for the barriers)."""

    def __init__(self, config: Config, output: Path, base_src: Any, adapters: Any,
                 phase_names: dict[str, list[str]]) -> None:
        self.config, self.output, self.base_src = config, output, base_src
        self.adapters, self.phase_names = adapters, phase_names

    def _export_extra(self, folder: Path, step: int, phase: str | None) -> dict[str, Any]:
        base = {"source": self.base_src.describe(), "relative_to_export": None}
        if self.base_src.local_path is not None:
            try:
                self.base_src.local_path.relative_to(self.output)
                base["relative_to_export"] = os.path.relpath(self.base_src.local_path, folder)
            except ValueError:
                pass
        return {"base": base, "training": {"step": step, "phase": phase, "ema": self.config.train.ema,
                                           "config": self.config.to_dict()}}

    def write_weights(self, folder: Path, raw: Any, overrides: Any, step: int, phase: str | None) -> None:
        """The trained weights (``overrides``: EMA tensors instead of the live ones) as a loadable folder."""
        from ..diffusion.checkpoint import write_trained_folder
        from .magicbokeh_model import export_checkpoint

        extra = self._export_extra(folder, step, phase)
        extra["unet_config"] = dict(raw.unet.config)
        extra["vae_config"] = dict(raw.vae.config)
        write_trained_folder(folder, export_checkpoint(raw, self.adapters, overrides), extra=extra)

    def save_checkpoint(self, acc: Any, raw: Any, opts: dict[str, Any], ema: Any, step: int, phase: str) -> None:
        """Publish ``checkpoint-STEP`` (weights, EMA, optimizer and trainer state); prune old ones."""
        from .common import atomic_checkpoint, prune_checkpoints

        main = acc.is_main_process
        with atomic_checkpoint(self.output, step, is_main_process=main, wait=acc.wait_for_everyone) as tmp:
            if main:
                self.write_weights(tmp, raw, None, step, phase)
                if ema is not None:
                    self.write_weights(tmp / EMA_DIR, raw, ema, step, phase)
                resume = tmp / RESUME_DIR
                resume.mkdir()
                save_optimizers(resume, opts, self.phase_names)
                scaler = acc.scaler.state_dict() if acc.scaler is not None else None
                state = {"step": step, "phase": phase, "world_size": acc.num_processes, "scaler": scaler,
                         "ranks": lora_ranks(self.config), "config": self.config.to_dict()}
                (resume / TRAINER_STATE).write_text(json.dumps(state, indent=1))
        if main:
            prune_checkpoints(self.output, self.config.logging.keep_checkpoints)

    def export_final(self, raw: Any, ema: Any, step: int) -> Path:
        """Publish ``final/``: the EMA weights when ``train.ema`` is on, else the live ones."""
        final = self.output / FINAL_DIR
        with publish_folder(final) as tmp:
            self.write_weights(tmp, raw, ema, step, None)
        logger.info("exported %s (step %d%s)", final, step, ", EMA weights" if ema is not None else "")
        return final


__all__ = ["EMA_DIR", "FINAL_DIR", "RESUME_DIR", "TRAINER_STATE", "CheckpointWriter", "check_resume", "ema_from",
           "load_optimizers", "lora_ranks", "save_optimizers"]
