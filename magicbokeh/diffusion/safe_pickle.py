"""Restricted unpickling of ``torch.save`` files that contain pickled modules (spec §4.4).

``lora.pkl`` holds a pickled ``ControlNetModel`` object, so ``weights_only=True`` rejects it and
plain ``torch.load`` would import (and may call) whatever the pickle names. Here every global the
pickle references goes through an allow-list:

1. tensor-rebuild functions, storages, ``OrderedDict``, ``set``, dtypes and a few inert torch value
   types resolve to the real objects;
2. classes under ``torch.nn``, ``models``, ``diffusers``, ``peft`` and ``accelerate`` resolve to an
   inert ``PickledObject`` stub that only records the state the pickle gives it;
3. anything else is refused with ``MagicBokehError``, before it is imported or called.

Python-2 spellings (``__builtin__``, ``copy_reg``) are normalised first, so protocol-2 pickles of
``eval`` or ``os.system`` are refused like any other unknown global. Nothing from the file is ever
imported or executed: the stubs define no behaviour beyond recording.
"""

from __future__ import annotations

import pickle
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ..errors import MagicBokehError

#: Module roots whose classes become inert stubs.
STUB_ROOTS = ("torch.nn", "models", "diffusers", "peft", "accelerate")
# Python 2 module names used by protocol ≤ 2 pickles.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_MAX_DEPTH = 64


class PickledObject:
    """Inert stand-in for a pickled class instance; records what unpickling hands it.

    Attributes (all plain data):
        pickled_path: ``module.QualName`` the pickle referenced.
        pickled_args: positional arguments given to the constructor (NEWOBJ / REDUCE).
        pickled_state: the state passed to ``__setstate__`` (a module's ``__dict__``).
        pickled_items: ``__setitem__`` calls (dict subclasses such as ``FrozenDict``).
        pickled_list: ``append`` / ``extend`` calls (list subclasses).
    """

    pickled_path = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "PickledObject":
        obj = object.__new__(cls)
        obj.__dict__.update(
            pickled_args=args, pickled_kwargs=kwargs, pickled_state=None, pickled_items={}, pickled_list=[]
        )
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args); record only
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["pickled_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.pickled_items[key] = value

    def append(self, value: Any) -> None:
        self.pickled_list.append(value)

    def extend(self, values: Any) -> None:
        self.pickled_list.extend(values)

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_path}>"


_STUB_CLASSES: dict[str, type] = {}


def _stub_class(path: str) -> type:
    cls = _STUB_CLASSES.get(path)
    if cls is None:
        name = path.rsplit(".", 1)[-1]
        cls = type(name, (PickledObject,), {"pickled_path": path, "__module__": __name__})
        _STUB_CLASSES[path] = cls
    return cls


def _rebuild_from_type_v2(func, new_type, args, state):
    """Guarded ``torch._tensor._rebuild_from_type_v2``: only plain tensors and parameters."""
    if func not in _REBUILD_FUNCTIONS or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise MagicBokehError(
            f"refusing to rebuild a tensor of type {getattr(new_type, '__name__', new_type)!r} "
            f"with {getattr(func, '__name__', func)!r}; only plain tensors are accepted."
        )
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


_REBUILD_FUNCTIONS = tuple(
    getattr(torch._utils, n)
    for n in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    )
    if hasattr(torch._utils, n)
)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # Wider than the spec's minimal list (§4.4) on purpose: other torch versions pickle sizes,
    # devices, dtypes and parameters through these names. Every entry is inert data or a guarded
    # tensor rebuild; none imports modules or calls code named by the file.
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    }
    for fn in _REBUILD_FUNCTIONS:
        allowed[("torch._utils", fn.__name__)] = fn
    # Protocol-2 pickles of bytes call _codecs.encode(str, "latin1"): a pure string conversion.
    import _codecs

    allowed[("_codecs", "encode")] = _codecs.encode
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            allowed[("torch", name)] = value
    return allowed


_ALLOWED = _allowed_globals()


def resolve_global(module: str, name: str) -> Any:
    """What a pickle's reference to ``module.name`` becomes: a real allowed object or a stub.

    Raises:
        MagicBokehError: for every other global (never imported).
    """
    module = _PY2_MODULES.get(module, module)
    found = _ALLOWED.get((module, name))
    if found is not None:
        return found
    if module == "torch" and name.endswith("Storage"):
        # Legacy typed storage names; torch's own unpickler wrapper maps them before us.
        return torch.serialization.StorageType(name)
    if any(module == root or module.startswith(root + ".") for root in STUB_ROOTS):
        return _stub_class(f"{module}.{name}")
    raise MagicBokehError(
        f"refusing to load the checkpoint: it references {module}.{name}, which is not a tensor, "
        "container or model class. The file may be malicious or is not a MagicBokeh checkpoint; "
        "nothing from it was run."
    )


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose every global goes through ``resolve_global``."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        return resolve_global(module, name)


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


def _restricted_loads(data: bytes, **kwargs):
    import io

    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


#: Passed to ``torch.load(pickle_module=...)``: torch subclasses ``Unpickler`` and calls ``load``.
restricted_pickle_module = types.ModuleType("magicbokeh_restricted_pickle")
restricted_pickle_module.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
restricted_pickle_module.load = _restricted_load  # type: ignore[attr-defined]
restricted_pickle_module.loads = _restricted_loads  # type: ignore[attr-defined]
restricted_pickle_module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]


def restricted_torch_load(path: str | Path) -> Any:
    """``torch.load`` of a file that may contain pickled modules, without running any of it.

    Uses ``map_location="cpu"`` and, for zip-format files, ``mmap=True`` (tensors are read lazily).

    Raises:
        MagicBokehError: for a missing, truncated or corrupt file, or a refused global.
    """
    path = Path(path)
    if not path.is_file():
        raise MagicBokehError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
    is_zip = zipfile.is_zipfile(path)
    if magic.startswith(b"PK") and not is_zip:
        raise MagicBokehError(
            f"checkpoint {path} ({size:,} bytes) is truncated or corrupt (its zip directory is "
            "missing); delete it and download it again."
        )
    try:
        return torch.load(
            path,
            map_location="cpu",
            weights_only=False,
            mmap=is_zip,
            pickle_module=restricted_pickle_module,
        )
    except MagicBokehError:
        raise
    except (EOFError, pickle.UnpicklingError, RuntimeError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise MagicBokehError(
            f"checkpoint {path} ({size:,} bytes) could not be read; it is truncated or corrupt "
            f"({type(exc).__name__}: {exc}). Delete it and download it again."
        ) from exc


# ---------------------------------------------------------------------------------------------
# Reading a pickled module tree


def _state(obj: PickledObject) -> dict:
    state = obj.pickled_state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (dict, slots)
        state = state[0]
    return state if isinstance(state, dict) else {}


def stub_config(obj: PickledObject) -> dict[str, Any]:
    """A diffusers model's config from its pickled ``_internal_dict`` (a ``FrozenDict``)."""
    cfg = _state(obj).get("_internal_dict")
    if isinstance(cfg, PickledObject):
        return dict(cfg.pickled_items)
    if isinstance(cfg, dict):
        return dict(cfg)
    return {}


def module_state_dict(root: Any) -> dict[str, torch.Tensor]:
    """Flat ``state_dict`` (dotted names) of a pickled ``nn.Module`` tree of stubs.

    Walks ``_modules`` recursively and collects ``_parameters`` and persistent ``_buffers``.
    A peft LoRA wrapper found inside (``base_layer`` + ``lora_A``/``lora_B``) is merged into
    plain ``weight``/``bias`` names, since our networks carry no adapters.

    Raises:
        MagicBokehError: when ``root`` is not a pickled module.
    """
    if not isinstance(root, PickledObject) or "_modules" not in _state(root):
        raise MagicBokehError(
            f"expected a pickled network object, got {type(root).__name__}"
            + (f" ({root.pickled_path})" if isinstance(root, PickledObject) else "")
        )
    out: dict[str, torch.Tensor] = {}
    _walk(root, "", out, depth=0)
    return out


def _walk(obj: PickledObject, prefix: str, out: dict, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise MagicBokehError("the pickled network is nested implausibly deep; refusing to read it")
    state = _state(obj)
    modules = state.get("_modules") or {}
    if obj.pickled_path.startswith("peft.") and "base_layer" in modules and "lora_A" in modules:
        _merge_peft_layer(obj, prefix, out, depth)
        return
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = _plain_tensor(value, prefix + name)
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in non_persistent:
            out[prefix + name] = _plain_tensor(value, prefix + name)
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, PickledObject):
            raise MagicBokehError(f"pickled submodule {prefix + name!r} is a {type(child).__name__}")
        _walk(child, f"{prefix}{name}.", out, depth + 1)


def _plain_tensor(value: Any, name: str) -> torch.Tensor:
    return plain_tensor(value, f"pickled parameter {name!r}")


def plain_tensor(value: Any, what: str) -> torch.Tensor:
    """A fresh plain tensor sharing ``value``'s storage, with no Python attributes from the file.

    Methods are called through ``torch.Tensor`` rather than the instance, so attributes the pickle
    may have attached to the object (``_rebuild_parameter_with_state``) can never shadow them.
    """
    if not isinstance(value, torch.Tensor):
        raise MagicBokehError(f"{what} is a {type(value).__name__}, not a tensor")
    return torch.Tensor.detach(value)


def _merge_peft_layer(obj: PickledObject, prefix: str, out: dict, depth: int) -> None:
    """Merge a pickled peft ``LoraLayer`` (Linear / Conv2d) into ``prefix.weight`` / ``.bias``."""
    state = _state(obj)
    modules = state["_modules"]
    base: dict[str, torch.Tensor] = {}
    _walk(modules["base_layer"], "", base, depth + 1)
    if "weight" not in base:
        raise MagicBokehError(f"pickled LoRA layer {prefix[:-1]!r} has no base weight")
    weight = base["weight"].float().clone()
    merged_already = set(state.get("merged_adapters") or [])
    active = state.get("_active_adapter") or []
    active = [active] if isinstance(active, str) else list(active)
    scaling = state.get("scaling") or {}
    disabled = bool(state.get("_disable_adapters", False))
    for adapter in active:
        if disabled or adapter in merged_already:
            continue
        try:
            a = _state(_state(modules["lora_A"])["_modules"][adapter])["_parameters"]["weight"]
            b = _state(_state(modules["lora_B"])["_modules"][adapter])["_parameters"]["weight"]
            scale = float(scaling[adapter])
        except (KeyError, TypeError) as exc:
            raise MagicBokehError(
                f"pickled LoRA layer {prefix[:-1]!r} lacks adapter {adapter!r} data ({exc})"
            ) from None
        a = plain_tensor(a, f"LoRA A of {prefix[:-1]!r}")
        b = plain_tensor(b, f"LoRA B of {prefix[:-1]!r}")
        r = a.shape[0]
        delta = b.reshape(b.shape[0], r).float() @ a.reshape(r, -1).float()
        weight += scale * delta.reshape(weight.shape)
    out[prefix + "weight"] = weight.to(base["weight"].dtype)
    if "bias" in base:
        out[prefix + "bias"] = base["bias"]


__all__ = [
    "PickledObject",
    "RestrictedUnpickler",
    "module_state_dict",
    "plain_tensor",
    "resolve_global",
    "restricted_pickle_module",
    "restricted_torch_load",
    "stub_config",
]
