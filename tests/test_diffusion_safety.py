"""Loading a checkpoint never runs code from it (restricted unpickler, spec §4.4)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from magicbokeh.diffusion.safe_pickle import PickledObject, resolve_global, restricted_torch_load
from magicbokeh.errors import MagicBokehError


class _Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Reduce]:
    import builtins

    return {
        "os.system": _Reduce(os.system, (f"touch {marker}",)),
        "builtins.eval": _Reduce(builtins.eval, (f"open({str(marker)!r}, 'w').write('ran')",)),
        "subprocess.Popen": _Reduce(subprocess.Popen, (["touch", str(marker)],)),
        "builtins.exec": _Reduce(builtins.exec, (f"open({str(marker)!r}, 'w').write('ran')",)),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "builtins.exec"])
def test_reduce_payload_in_torch_save_is_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    # hidden next to plausible checkpoint content
    torch.save({"rank_unet": 4, "state_dict_unet": {"w": torch.ones(2)}, "controlnet": _payloads(marker)[name]}, path)
    with pytest.raises(MagicBokehError, match="refusing to load"):
        restricted_torch_load(path)
    assert not marker.exists()


def test_the_payload_is_live_under_plain_torch_load(tmp_path):
    # Proves the refused files above really would run code: the test is able to fail.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    torch.save({"x": _payloads(marker)["builtins.eval"]}, path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize(
    "opcodes",
    [
        b"cposix\nsystem\n(S'touch {m}'\ntR.",  # protocol 0, os.system on Linux
        b"c__builtin__\neval\n(S'open(\"{m}\", \"w\").write(\"x\")'\ntR.",  # protocol-2 builtins spelling
        b"cbuiltins\nexec\n(S'open(\"{m}\", \"w\").write(\"x\")'\ntR.",
        b"csubprocess\nPopen\n((S'touch'\nS'{m}'\nltR.",
        b"ccommands\ngetoutput\n(S'touch {m}'\ntR.",  # Python 2 name of subprocess helpers
    ],
)
def test_raw_pickles_are_refused_as_legacy_files_and_inside_zip_archives(tmp_path, opcodes):
    marker = tmp_path / "pwned"
    payload = opcodes.replace(b"{m}", str(marker).encode())
    # sanity: the stream is a valid pickle that the restricted unpickler rejects by name
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(payload)
    with pytest.raises(MagicBokehError, match="refusing to load"):
        restricted_torch_load(legacy)
    # the same stream as data.pkl of a torch zip archive
    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(1)}, good)
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = payload if info.filename.endswith("data.pkl") else src.read(info)
            dst.writestr(info, data)
    with pytest.raises(MagicBokehError, match="refusing to load"):
        restricted_torch_load(evil)
    assert not marker.exists()


def test_allow_list_resolves_only_inert_objects():
    assert resolve_global("collections", "OrderedDict") is __import__("collections").OrderedDict
    assert resolve_global("__builtin__", "set") is set
    assert resolve_global("torch._utils", "_rebuild_tensor_v2") is torch._utils._rebuild_tensor_v2
    stub = resolve_global("models.controlnet", "ControlNetModel")
    assert issubclass(stub, PickledObject) and stub.pickled_path == "models.controlnet.ControlNetModel"
    # a stub root never imports: even a module-looking name becomes an inert class
    assert issubclass(resolve_global("diffusers.utils", "os"), PickledObject)
    for module, name in [
        ("builtins", "getattr"),
        ("__builtin__", "__import__"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch._utils", "_import_dotted_name"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("copy_reg", "_reconstructor"),
        ("posix", "system"),
    ]:
        with pytest.raises(MagicBokehError, match=f"{name}"):
            resolve_global(module, name)


def test_stubs_record_state_and_never_run_methods(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = tmp_path / "net.pt"
    torch.save({"model": net}, path)
    loaded = restricted_torch_load(path)["model"]
    assert isinstance(loaded, PickledObject) and loaded.pickled_path.endswith("Sequential")
    assert not callable(loaded)
    child = loaded.pickled_state["_modules"]["0"]
    torch.testing.assert_close(child.pickled_state["_parameters"]["weight"], net[0].weight.detach())


def test_truncated_and_corrupt_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"a": torch.arange(10000.0)}, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MagicBokehError, match="truncated or corrupt"):
        restricted_torch_load(truncated)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x02}q\x00(X")  # a pickle cut mid-stream
    with pytest.raises(MagicBokehError, match="truncated or corrupt"):
        restricted_torch_load(garbage)
    with pytest.raises(MagicBokehError, match="not found"):
        restricted_torch_load(tmp_path / "missing.pkl")


def test_pickle_stream_round_trip_without_torch_load():
    # The restricted module also works as a plain pickle module (used by torch's legacy path).
    from magicbokeh.diffusion.safe_pickle import restricted_pickle_module

    data = pickle.dumps({"a": [1, 2, {3}]}, protocol=2)
    assert restricted_pickle_module.load(io.BytesIO(data)) == {"a": [1, 2, {3}]}
