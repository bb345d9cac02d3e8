"""Configuration of the MagicBokeh trainer: typed sections, YAML loading, ``key=value`` overrides.

Every key is checked before anything is built: an unknown key (in the YAML file or an override)
raises ``MagicBokehError`` naming it and listing the keys of its section. Values are converted to
the field's type (``"5e-5"`` → float, ``"true"`` → bool) and range-checked in :meth:`Config.validate`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import MagicBokehError

#: Training phases, in schedule order.
PHASES = ("sr_pretrain", "bokeh", "isr")
#: Which data stream each phase reads: SR pairs (clean photo + degraded copy) or bokeh pairs.
PHASE_DATA = {"sr_pretrain": "sr", "bokeh": "bokeh", "isr": "sr"}
MIXED_PRECISION = ("no", "fp16", "bf16")
BOKEH_INPUTS = ("lq", "degrade")
TINY_BASE = "tiny"


@dataclass
class ModelConfig:
    """Adapter ranks and architecture options (the networks themselves come from ``base``)."""

    rank_unet: int = 4  # our choice (OSEDiff's default); the official rank is stored in lora.pkl
    rank_vae: int = 4  # our choice (OSEDiff's default)
    rank_attn: int = 64  # our choice (official prepare_for_inference default)
    #: ControlNet conditioning-embedding widths; None = SD ControlNet (16, 32, 96, 256) = 1/8 resolution.
    conditioning_embedding_out_channels: list[int] | None = None
    attention: str = "sdpa"  # sdpa | xformers | naive


@dataclass
class ScheduleConfig:
    """Phase schedule: ``sr_pretrain_steps`` SR steps, then cycles of bokeh steps and Real-ISR steps."""

    max_steps: int = 100_000
    sr_pretrain_steps: int = 20_000
    bokeh_steps: int = 1  # bokeh steps per cycle
    isr_steps: int = 1  # Real-ISR steps per cycle


@dataclass
class OptimConfig:
    """AdamW per phase (one optimizer each, own state); constant LR after a linear warm-up."""

    lr_sr_pretrain: float = 5e-5
    lr_bokeh: float = 5e-5
    lr_isr: float = 5e-6
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping
    warmup_steps: int = 0  # per phase, counted in that phase's own steps


@dataclass
class LossConfig:
    """Pixel-space loss ``l2_weight · MSE + lpips_weight · LPIPS`` on images in [-1, 1]."""

    l2_weight: float = 1.0
    lpips_weight: float = 2.0  # > 0 needs lpips (requirements-train.txt); 0 = L2 only


@dataclass
class TrainConfig:
    """Batch, precision and memory options."""

    batch_size: int = 1  # per process
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "bf16"  # no | fp16 | bf16
    gradient_checkpointing: bool = True
    ema: bool = False
    ema_decay: float = 0.999
    num_workers: int = 2
    seed: int = 0


@dataclass
class DataConfig:
    """Training data: an SR photo folder and a bokeh folder in the synthetic layout."""

    sr_dir: str | None = None  # clean photos, degraded on the fly
    bokeh_dir: str | None = None  # aif/ lq/ disparity/ bokeh/ meta/
    resolution: int = 512
    bokeh_input: str = "degrade"  # degrade: DIR/aif degraded afresh per draw; lq: the fixed DIR/lq copy
    degradation_preset: str = "realesrgan"
    degradation_scale: float = 4.0
    #: SR stream: unsharp-mask the clean crop, train towards it and degrade it (Real-ESRGAN's gt_usm).
    sharpen_target: bool = True
    quantize_disparity: bool = True  # 8-bit truncated disparity and focus, as the backend feeds
    generate: int = 0  # no folders given: generate this many synthetic pairs into OUTPUT/data
    val_samples: int = 4
    val_sr_dir: str | None = None  # default: sr_dir
    val_bokeh_dir: str | None = None  # default: bokeh_dir


@dataclass
class LogConfig:
    """How often to log, render validation samples and save checkpoints (in optimizer steps)."""

    log_every: int = 10
    sample_every: int = 1000
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3  # 0 keeps all


@dataclass
class Config:
    """The whole trainer configuration (see ``configs/train_magicbokeh.yaml``)."""

    base: str | None = None  # SD2.1-base folder / repo id, or "tiny" (random tiny model in OUTPUT)
    init_from: str | None = None  # lora.pkl or a trained folder to fine-tune
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logging: LogConfig = field(default_factory=LogConfig)

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Config":
        """Build from nested dicts; unknown keys raise ``MagicBokehError`` naming them."""
        return _build(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def override(self, assignment: str) -> None:
        """Apply one ``section.key=value`` override (value parsed as YAML)."""
        import yaml

        if "=" not in assignment:
            raise MagicBokehError(f"override {assignment!r} is not key=value (e.g. optim.lr_bokeh=1e-5).")
        key, _, text = assignment.partition("=")
        key = key.strip()
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise MagicBokehError(f"override {key}: cannot parse {text!r} ({exc}).") from None
        target: Any = self
        parts = key.split(".")
        for i, part in enumerate(parts):
            names = {f.name: f for f in dataclasses.fields(target)}
            if part not in names:
                where = ".".join(parts[:i]) or "the top level"
                raise MagicBokehError(
                    f"unknown config key {key!r}: {where} has no {part!r}; known keys: {', '.join(names)}."
                )
            hints = typing.get_type_hints(type(target))
            if i == len(parts) - 1:
                if dataclasses.is_dataclass(hints[part]):
                    raise MagicBokehError(f"config key {key!r} is a section; set one of its keys instead.")
                setattr(target, part, _convert(hints[part], value, key))
            else:
                target = getattr(target, part)
                if not dataclasses.is_dataclass(target):
                    raise MagicBokehError(f"config key {'.'.join(parts[: i + 1])!r} is not a section.")

    def validate(self) -> None:
        """Range checks; raises ``MagicBokehError`` naming the key and the allowed values."""
        m, s, o, t, d, lg = self.model, self.schedule, self.optim, self.train, self.data, self.logging
        for key, value in (("model.rank_unet", m.rank_unet), ("model.rank_vae", m.rank_vae),
                           ("model.rank_attn", m.rank_attn), ("schedule.max_steps", s.max_steps),
                           ("train.batch_size", t.batch_size),
                           ("train.gradient_accumulation_steps", t.gradient_accumulation_steps),
                           ("data.resolution", d.resolution), ("logging.log_every", lg.log_every),
                           ("logging.sample_every", lg.sample_every),
                           ("logging.checkpoint_every", lg.checkpoint_every)):  # fmt: skip
            if value < 1:
                raise MagicBokehError(f"{key}={value} must be >= 1.")
        for key, value in (("schedule.sr_pretrain_steps", s.sr_pretrain_steps), ("schedule.bokeh_steps", s.bokeh_steps),
                           ("schedule.isr_steps", s.isr_steps), ("optim.warmup_steps", o.warmup_steps),
                           ("train.num_workers", t.num_workers), ("data.generate", d.generate),
                           ("data.val_samples", d.val_samples), ("logging.keep_checkpoints", lg.keep_checkpoints),
                           ("optim.lr_sr_pretrain", o.lr_sr_pretrain), ("optim.lr_bokeh", o.lr_bokeh),
                           ("optim.lr_isr", o.lr_isr), ("optim.weight_decay", o.weight_decay),
                           ("optim.max_grad_norm", o.max_grad_norm), ("loss.l2_weight", self.loss.l2_weight),
                           ("loss.lpips_weight", self.loss.lpips_weight)):  # fmt: skip
            if not (value >= 0 and value != float("inf")):  # NaN fails both comparisons
                raise MagicBokehError(f"{key}={value} must be a finite number >= 0.")
        if s.bokeh_steps + s.isr_steps == 0 and s.max_steps > s.sr_pretrain_steps:
            raise MagicBokehError("schedule.bokeh_steps and schedule.isr_steps are both 0; set at least one to >= 1.")
        if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
            raise MagicBokehError(f"optim.betas={o.betas} must be two numbers in [0, 1).")
        if self.loss.l2_weight == 0 and self.loss.lpips_weight == 0:
            raise MagicBokehError("loss.l2_weight and loss.lpips_weight are both 0; nothing to train.")
        if t.mixed_precision not in MIXED_PRECISION:
            raise MagicBokehError(f"train.mixed_precision={t.mixed_precision!r}; use one of {', '.join(MIXED_PRECISION)}.")
        if not 0.0 <= t.ema_decay < 1.0:
            raise MagicBokehError(f"train.ema_decay={t.ema_decay} must be in [0, 1).")
        if d.bokeh_input not in BOKEH_INPUTS:
            raise MagicBokehError(f"data.bokeh_input={d.bokeh_input!r}; use one of {', '.join(BOKEH_INPUTS)}.")
        if m.attention not in ("sdpa", "xformers", "naive"):
            raise MagicBokehError(f"model.attention={m.attention!r}; use sdpa, xformers or naive.")
        if not self.base:
            raise MagicBokehError("no base model: set base in the config or pass --base ID|DIR (or base: tiny).")
        if (d.sr_dir is None or d.bokeh_dir is None) and d.generate <= 0:
            raise MagicBokehError("no training data: set data.sr_dir and data.bokeh_dir (or data.generate=N "
                                  "for synthetic pairs).")
        for key in ("sr_dir", "bokeh_dir", "val_sr_dir", "val_bokeh_dir"):
            folder = getattr(d, key)
            if folder is not None and not Path(folder).expanduser().is_dir():
                raise MagicBokehError(f"data.{key}={folder} is not a folder.")

    # -- schedule --------------------------------------------------------------------------------

    def phase_at(self, step: int) -> str:
        """Phase of optimizer step ``step`` (0-based): SR pre-training, then bokeh/ISR cycles."""
        s = self.schedule
        if step < s.sr_pretrain_steps:
            return "sr_pretrain"
        k = (step - s.sr_pretrain_steps) % (s.bokeh_steps + s.isr_steps)
        return "bokeh" if k < s.bokeh_steps else "isr"

    def lr_for(self, phase: str) -> float:
        return float(getattr(self.optim, f"lr_{phase}"))


def _build(cls: Any, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise MagicBokehError(f"config section {prefix.rstrip('.') or 'top level'} must be a mapping; got {raw!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise MagicBokehError(
            f"unknown config key {prefix + str(unknown[0])!r}; known keys"
            f"{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)}."
        )
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _convert(hint, value, prefix + name)
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type (Optional, int, float, bool, str, list[...])."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise MagicBokehError(f"config key {key!r} must be a list; got {value!r}.")
        return [_convert(args[0], v, key) for v in value]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if value is None or isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise MagicBokehError(f"config key {key!r} must be {getattr(hint, '__name__', hint)}; got {value!r}.") from None
    return value


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``key=value`` overrides, validate nothing yet (see ``validate``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MagicBokehError(f"config file {path} not found; pass --config configs/train_magicbokeh.yaml or similar.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MagicBokehError(f"{path} is not valid YAML: {exc}") from None
    config = Config.from_dict(raw)
    for item in overrides or []:
        config.override(item)
    return config


__all__ = [
    "BOKEH_INPUTS",
    "Config",
    "DataConfig",
    "LogConfig",
    "LossConfig",
    "MIXED_PRECISION",
    "ModelConfig",
    "OptimConfig",
    "PHASES",
    "PHASE_DATA",
    "ScheduleConfig",
    "TINY_BASE",
    "TrainConfig",
    "load_config",
]
