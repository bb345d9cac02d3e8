"""Phone photos that carry depth, end to end: CLI, the request road and the app's /render API.

References are independent of the code under test: the GDepth map and the original photo are taken
out of the file here (Extended XMP chunks joined by hand, base64 decoded), and the GDepth
RangeInverse rule of ../shared/testdata/phone-depth/README.md gives the focus plane.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import embedded_depth_files as files
from magicbokeh.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "phone-depth"
GDEPTH = SHARED / "gdepth_motorola_xt912.jpg"
HEIC = SHARED / "pug.heic"


def _cli_json(capsys, *argv: str) -> dict:
    assert main(["render", *argv, "--json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _extended_xmp(data: bytes) -> str:
    """Every Extended XMP chunk of a JPEG, placed at its offset (written from the XMP spec)."""
    head = b"http://ns.adobe.com/xmp/extension/\x00"
    out: bytearray | None = None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xDA, 0xD9):
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        body = data[pos + 4 : pos + 2 + length]
        if data[pos + 1] == 0xE1 and body.startswith(head):
            total, offset = struct.unpack(">II", body[len(head) + 32 : len(head) + 40])
            out = out if out is not None else bytearray(total)
            chunk = body[len(head) + 40 :]
            out[offset : offset + len(chunk)] = chunk
        pos += 2 + length
    assert out is not None
    return out.decode()


def _field(xml: str, name: str) -> bytes:
    return base64.b64decode(re.search(name + r'="([^"]+)"', xml).group(1))


def _minmax(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return (a - a.min()) / (a.max() - a.min())


# ---------------------------------------------------------------------------------------------
# The shared Lens Blur JPEG (GDepth) through the CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not GDEPTH.is_file(), reason="needs ../shared/testdata/phone-depth")
def test_cli_gdepth_uses_its_map_renders_the_original_and_presets_the_focus(tmp_path, capsys):
    data = GDEPTH.read_bytes()
    xml = _extended_xmp(data)
    original = np.asarray(Image.open(io.BytesIO(_field(xml, "GImage:Data"))).convert("RGB"))
    dn = np.asarray(Image.open(io.BytesIO(_field(xml, "GDepth:Data"))).convert("L"), np.float64) / 255.0
    out, depth = tmp_path / "out.png", tmp_path / "depth.png"

    info = _cli_json(capsys, str(GDEPTH), "-o", str(out), "--K", "0", "--save-depth", str(depth))
    assert info["depth_source"].startswith("from the photo") and "GDepth" in info["depth_source"]
    assert not info["approximate_depth"]
    emb = info["embedded_depth"]
    assert emb["format"] == "gdepth" and emb["representation"] == "RangeInverse"
    assert emb["near"] == pytest.approx(18.85, abs=0.01) and emb["far"] == pytest.approx(633.3, abs=0.1)
    assert emb["depth_used"] and emb["focus_used"] and emb["focus_source"] == "GFocus"
    # K = 0 renders the photo itself: the original in GImage:Data, not the phone's blurred primary.
    rendered = _pixels(out)
    np.testing.assert_array_equal(rendered, original)
    primary = np.asarray(Image.open(GDEPTH).convert("RGB"))
    assert np.abs(primary.astype(int) - original).mean() > 1.0
    # --save-depth writes the embedded map: minmax(1 - dn) (RangeInverse), 16-bit.
    saved = np.asarray(Image.open(depth)).astype(np.float64) / 65535.0
    np.testing.assert_allclose(saved, _minmax(1.0 - dn), atol=1.5 / 65535)
    # The focus plane is FocalDistance's: dn = far (d - near) / (d (far - near)), then minmax(1 - dn).
    near, far, d = emb["near"], emb["far"], emb["focus_distance"]
    dn_f = far * (d - near) / (d * (far - near))
    expected = ((1.0 - dn_f) - (1.0 - dn.max())) / (dn.max() - dn.min())
    assert info["focus_disparity"] == pytest.approx(expected, abs=2e-3)
    h, w = original.shape[:2]
    assert info["focus_point"] == [round(0.29814816 * w), round(0.53194445 * h)]  # GFocus:FocalPointX/Y
    assert any(m.startswith("Focus from the photo (GFocus)") for m in info["messages"])


@pytest.mark.skipif(not GDEPTH.is_file(), reason="needs ../shared/testdata/phone-depth")
def test_cli_click_overrides_the_photo_focus(tmp_path, capsys):
    info = _cli_json(capsys, str(GDEPTH), "-o", str(tmp_path / "o.png"), "--K", "0", "--focus", "100,1900",
                     "--save-depth", str(tmp_path / "d.png"))
    assert info["focus_point"] == [100, 1900]
    assert info["embedded_depth"]["depth_used"] and not info["embedded_depth"]["focus_used"]
    assert not any("Focus from the photo" in m for m in info["messages"])
    saved = np.asarray(Image.open(tmp_path / "d.png")).astype(np.float64) / 65535.0
    window = saved[1900 - 3 : 1900 + 4, 100 - 3 : 100 + 4]  # the default 7x7 median focus rule
    assert info["focus_disparity"] == pytest.approx(float(np.median(window)), abs=1e-3)


@pytest.mark.skipif(not HEIC.is_file(), reason="needs ../shared/testdata/phone-depth")
def test_cli_heic_uses_its_depth_image_and_subject_area(tmp_path, capsys):
    info = _cli_json(capsys, str(HEIC), "-o", str(tmp_path / "pug.png"), "--max-side", "512",
                     "--output-size", "processed", "--K", "4")
    emb = info["embedded_depth"]
    assert emb["format"] == "heic-depth" and emb["representation"] == "uniform disparity"
    assert emb["focus_source"] == "EXIF SubjectArea" and emb["focus_used"]
    assert info["input_size"] == [4032, 3024] and info["output_size"] == [512, 384]
    # EXIF SubjectArea (2003, 1506, ...) is the centre: the preset pixel at the processed size.
    assert info["focus_point"] == [round(2003 * 512 / 4032), round(1506 * 384 / 3024)]
    assert _pixels(tmp_path / "pug.png").shape == (384, 512, 3)


# ---------------------------------------------------------------------------------------------
# Without ../shared: files written here
# ---------------------------------------------------------------------------------------------


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blurred primary, sharp original, stored dn) of a 96x64 two-plane scene."""
    rng = np.random.default_rng(3)
    original = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    primary = np.full_like(original, 128)
    dn = np.full((64, 96), 200, np.uint8)
    dn[16:48, 24:72] = 20  # a near box (0 = near)
    return primary, original, dn


def test_cli_inline_gdepth_renders_the_original_with_its_map(tmp_path, capsys):
    primary, original, dn = _scene()
    box = 100.0 * 10.0 / (100.0 - (20 / 255) * (100.0 - 10.0))  # RangeInverse depth of the near box
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original),
                                   focus=(0.5, 0.5, box))
    photo = tmp_path / "lensblur.jpg"
    photo.write_bytes(data)
    out, depth = tmp_path / "out.png", tmp_path / "d.png"
    info = _cli_json(capsys, str(photo), "-o", str(out), "--K", "0", "--save-depth", str(depth))
    assert info["embedded_depth"]["format"] == "gdepth" and info["embedded_depth"]["focus_used"]
    np.testing.assert_array_equal(_pixels(out), np.asarray(Image.open(io.BytesIO(files.jpeg(original)))))
    saved = np.asarray(Image.open(depth)).astype(np.float64) / 65535.0
    np.testing.assert_allclose(saved, _minmax(1.0 - dn / 255.0), atol=1.5 / 65535)
    assert info["focus_point"] == [48, 32] and info["focus_disparity"] == pytest.approx(1.0, abs=1e-4)


def test_cli_depth_model_does_not_hide_the_photos_own_map(tmp_path, capsys):
    """--depth-model names the model that --depth auto uses for photos WITHOUT depth; a portrait's own map
    still comes first (the option used to replace "auto")."""
    primary, original, dn = _scene()
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original))
    photo = tmp_path / "lensblur.jpg"
    photo.write_bytes(data)
    info = _cli_json(capsys, str(photo), "-o", str(tmp_path / "out.png"), "--K", "8",
                     "--depth-model", "small")
    assert info["embedded_depth"]["format"] == "gdepth" and info["embedded_depth"]["depth_used"]


def test_malformed_embedded_depth_falls_back_with_a_message(tmp_path, capsys):
    primary, original, dn = _scene()
    good, extended, guid = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original))
    # The same file whose Extended XMP declares more bytes than its chunks hold (a truncated packet).
    chunks = [files.ext_chunk(guid, len(extended) + 1000, 0, extended)]
    main_packet = files.segment(files.MAIN + files.xmp_main(
        'GDepth:Format="RangeInverse" GDepth:Near="10" GDepth:Far="100" GDepth:Mime="image/png"', guid))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(files.insert_segments(files.jpeg(primary), [main_packet, *chunks]))
    info = _cli_json(capsys, str(bad), "-o", str(tmp_path / "o.png"), "--depth", "auto", "--K", "4")
    assert not info["depth_source"].startswith("from the photo")
    assert info["embedded_depth"]["error"] and not info["embedded_depth"]["depth_used"]
    assert any("own depth map is not used" in m for m in info["messages"])
    # Asked for explicitly, the photo's depth is an error with the reader's message.
    assert main(["render", str(bad), "-o", str(tmp_path / "o2.png"), "--depth", "embedded", "-q"]) != 0
    assert "depth cannot be used" in capsys.readouterr().err


def test_embedded_asked_for_a_plain_photo_is_refused(tmp_path, capsys):
    photo = tmp_path / "plain.png"
    Image.fromarray(_scene()[1]).save(photo)
    assert main(["render", str(photo), "-o", str(tmp_path / "o.png"), "--depth", "embedded", "-q"]) != 0
    assert "carries no depth map" in capsys.readouterr().err


def _smooth() -> np.ndarray:
    """A 96x64 colour gradient (HEVC keeps it close; random noise it would not)."""
    y, x = np.mgrid[0:64, 0:96]
    return np.stack([x * 255 // 95, y * 255 // 63, (x + y) * 255 // 158], axis=-1).astype(np.uint8)


def _heic(rgb: np.ndarray) -> bytes:
    pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="HEIF", quality=95)
    return buf.getvalue()


def test_heic_photos_in_a_batch_folder(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = _smooth()
    (folder / "a.heic").write_bytes(_heic(rgb))
    Image.fromarray(rgb).save(folder / "b.png")
    out = tmp_path / "out"
    result = _cli_json(capsys, str(folder), "-o", str(out), "--K", "0", "--depth", "approximate")
    assert not result["failures"] and len(result["results"]) == 2
    decoded = np.asarray(Image.open(folder / "a.heic").convert("RGB"))
    np.testing.assert_array_equal(_pixels(out / "a.png"), decoded)
    assert np.abs(decoded.astype(int) - rgb).mean() < 8  # the HEIC encoder is lossy


# ---------------------------------------------------------------------------------------------
# The app: upload state and the /render API
# ---------------------------------------------------------------------------------------------


def test_app_upload_renders_the_file_with_its_depth_and_a_click_overrides(tmp_path):
    from conftest_app import app
    from magicbokeh.app_settings import AppSettings

    primary, original, dn = _scene()
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original), focus=(0.5, 0.5, 12.0))
    photo = tmp_path / "lensblur.jpg"
    photo.write_bytes(data)
    h = app.handlers
    shown, state, *_rest = h.on_upload(str(photo))
    assert isinstance(shown, str)  # a PNG of the original it carries, not the blurred primary
    np.testing.assert_array_equal(_pixels(shown), np.asarray(Image.open(io.BytesIO(files.jpeg(original)))))
    assert "GDepth" in _rest[2]
    outputs = h.render(AppSettings(image=shown, state=state, k=0.0))
    info, status = outputs[5], outputs[3]
    assert info["embedded_depth"]["depth_used"] and info["embedded_depth"]["focus_used"]
    assert "from the photo" in status and info["focus_point"] == [48, 32]
    outputs = h.render(AppSettings(image=shown, state=state, focus_x=5, focus_y=5, k=0.0))
    assert outputs[5]["focus_point"] == [5, 5] and not outputs[5]["embedded_depth"]["focus_used"]
    assert outputs[5]["embedded_depth"]["depth_used"]


def test_app_low_quality_simulation_degrades_the_original_a_portrait_carries(tmp_path):
    from magicbokeh import app_support

    primary, original, dn = _scene()
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original))
    photo = tmp_path / "lensblur.jpg"
    photo.write_bytes(data)
    from_file = app_support.simulate_low_quality(str(photo), seed=5)
    from_original = app_support.simulate_low_quality(Image.open(io.BytesIO(files.jpeg(original))), seed=5)
    np.testing.assert_array_equal(from_file.rgb, from_original.rgb)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from conftest_app import app
    from gradio_client import Client

    _, url, _ = app.launch(port=None, prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False,
                           mcp=False)
    try:
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    finally:
        app.demo.close()


def test_api_render_reads_heic_and_embedded_depth(client, tmp_path):
    from gradio_client import handle_file

    primary, original, dn = _scene()
    heic = tmp_path / "photo.heic"
    heic.write_bytes(_heic(_smooth()))
    (before, after), _, info = client.predict(handle_file(str(heic)), k=0, backend="classical",
                                              depth_model="approximate", api_name="/render")
    np.testing.assert_array_equal(_pixels(after), np.asarray(Image.open(heic).convert("RGB")))
    assert info["input_size"] == [96, 64] and "embedded_depth" not in info
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original), focus=(0.5, 0.5, 12.0))
    portrait = tmp_path / "lensblur.jpg"
    portrait.write_bytes(data)
    (before, _), _, info = client.predict(handle_file(str(portrait)), k=8, backend="classical",
                                          api_name="/render")
    assert info["embedded_depth"]["format"] == "gdepth" and info["depth_source"].startswith("from the photo")
    np.testing.assert_array_equal(_pixels(before), np.asarray(Image.open(io.BytesIO(files.jpeg(original)))))


# ---------------------------------------------------------------------------------------------
# The GPU road (ZeroGPU router): the photo's depth crosses into the GPU call
# ---------------------------------------------------------------------------------------------


def test_gpu_request_gets_the_original_and_the_photos_map(tmp_path, monkeypatch):
    import pickle

    from magicbokeh import backends, zerogpu
    from magicbokeh.backends import Availability, Backend, BackendResult
    from magicbokeh.depth.from_photo import open_photo
    from magicbokeh.request import RenderRequest, RenderSettings

    seen = []

    class Recorder(Backend):
        name, label = "magicbokeh", "recording stand-in"

        def availability(self, options=None):
            return Availability(True, "stand-in")

        def render(self, image, disparity, focus_disparity, k, *, options, image_key, progress=None):
            seen.append((np.array(image), np.array(disparity), focus_disparity))
            return BackendResult(np.asarray(image))

    primary, original, dn = _scene()
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original), focus=(0.5, 0.5, 12.0))
    photo = tmp_path / "lensblur.jpg"
    photo.write_bytes(data)
    opened = pickle.loads(pickle.dumps(open_photo(str(photo))))  # what crosses into the ZeroGPU worker
    assert opened.embedded is not None and opened.embedded.format == "gdepth"
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    backends.register_backend("magicbokeh", lambda: Recorder())
    try:
        result = zerogpu.render_request(RenderRequest(str(photo), settings=RenderSettings(k=8, backend="magicbokeh")))
    finally:
        backends.register_backend("magicbokeh", "magicbokeh.diffusion.backend:MagicBokehBackend")
        zerogpu._RECENT.clear()
    (image, disparity, _), = seen
    np.testing.assert_array_equal((image * 255 + 0.5).astype(np.uint8),
                                  np.asarray(Image.open(io.BytesIO(files.jpeg(original)))))
    np.testing.assert_allclose(disparity, _minmax(1.0 - dn / 255.0), atol=1e-6)
    assert result.embedded_depth["depth_used"] and result.depth_source.startswith("from the photo")


def test_degrade_command_degrades_the_original_a_portrait_carries(tmp_path):
    primary, original, dn = _scene()
    data, _, _ = files.gdepth_file(files.jpeg(primary), files.png(dn), files.jpeg(original))
    (tmp_path / "lensblur.jpg").write_bytes(data)
    (tmp_path / "original.jpg").write_bytes(files.jpeg(original))
    for name in ("lensblur", "original"):
        assert main(["degrade", str(tmp_path / f"{name}.jpg"), "-o", str(tmp_path / f"{name}_lq.png"),
                     "--seed", "3", "-q"]) == 0
    np.testing.assert_array_equal(_pixels(tmp_path / "lensblur_lq.png"), _pixels(tmp_path / "original_lq.png"))
