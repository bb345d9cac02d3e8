"""Reading third-party ``.pth`` state dicts without running code from them.

Every converter of an official checkpoint (DA depth, LDF) reads through :func:`read_state_dict`:
``torch.load(weights_only=True)`` (tensors and plain containers only), a clear message for a pickle
that names code, and the usual wrappers (``model``, ``state_dict``, ``module.`` prefixes) removed.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .errors import MagicBokehError

if TYPE_CHECKING:
    import torch

# torch's refusal names the global it will not import ("... unsupported GLOBAL posix.system ..."), for
# every pickle protocol; any other unpickling failure (e.g. "Unsupported operand 80" for a PNG) is a file
# that is not a checkpoint at all.
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_state_dict(path: str | os.PathLike, *, what: str, hint: str) -> dict[str, "torch.Tensor"]:
    """The tensors of a ``.pth`` file, keyed as saved (``model``/``state_dict`` unwrapped, ``module.`` dropped).

    ``what`` names the file in the "not found" message (e.g. ``"saliency checkpoint"``); ``hint`` ends
    the message for a file that holds code (what the file should be instead).

    Raises:
        MagicBokehError: missing, truncated or not a checkpoint; a pickle that names code (the global it
            asked for is named); no tensors in it.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise MagicBokehError(f"{what} {path} not found.")
    try:
        # mmap needs the zip format of torch.save; older (legacy-format) files load without it.
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        found = _REFUSED_GLOBAL.search(str(exc))
        if found is None:
            raise MagicBokehError(f"cannot read {path.name}: truncated or not a torch checkpoint.") from None
        raise MagicBokehError(
            f"refused to load {path.name}: it contains code, not only tensors (it asks for {found.group(1)}). {hint}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MagicBokehError(f"cannot read {path.name}: truncated or not a torch checkpoint ({exc}).") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise MagicBokehError(f"{path.name} holds no state dict (expected a dict of tensors, or one under 'model').")
    # Top-level non-tensors (e.g. optimizer scalars beside a bare dict) are not weights.
    state = {(k[len("module."):] if k.startswith("module.") else k): v
             for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise MagicBokehError(f"{path.name} holds no tensors.")
    return state
