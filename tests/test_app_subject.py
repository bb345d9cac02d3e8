"""Subject focus in the app: clicks select the subject (tiny random SAM built locally, GrabCut without
weights), the overlay, the keep-sharp option, the /render API's appended ``subject`` and ``points``
(old-style calls unchanged), and the licence panel's subject lines."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest_app import EXAMPLES, app  # noqa: F401  (sets the offline environment first)
from magicbokeh.app_settings import AppSettings, ModelSources
from magicbokeh.request import Focus
from magicbokeh.subject import render_focus, sam
from magicbokeh.ui import subject_panel
from magicbokeh.ui.handlers import Handlers
from test_sam import _build_tiny_sam

ROWS = (slice(30, 70), slice(40, 120))


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> str:
    return _build_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


pytestmark = pytest.mark.usefixtures("isolated_subject_models")


def _photo_file(tmp_path) -> str:
    rgb = np.random.default_rng(1).integers(0, 256, (100, 160, 3), dtype=np.uint8)
    rgb[ROWS] = (220, 40, 40)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return str(path)


def _click(x: int, y: int) -> SimpleNamespace:
    return SimpleNamespace(index=(x, y))


def test_clicks_select_the_subject_show_it_and_render_it_sharp(tiny_sam, tmp_path):
    sources = ModelSources(sam_model=tiny_sam)
    click = subject_panel.click_handler(sources)
    path = _photo_file(tmp_path)
    shown, state, fx, fy, points, keep = click(path, None, None, subject_panel.MODE_ADD, False, _click(80, 50))
    assert (fx, fy) == (None, None) and points == [[80, 50, 1]]
    assert keep["value"] is True  # on once a subject exists
    # The photo shows the mask of the same points (reference: SAM itself) tinted, and the point.
    original = Image.open(path).convert("RGB")
    mask = sam.PointSegmenter(tiny_sam).segment(np.asarray(original), points).mask
    ref = subject_panel.overlay_photo(original, mask, points)
    assert np.array_equal(np.asarray(Image.open(shown).convert("RGB")), ref)
    # A negative point is added to the same photo's points; the state still finds the original.
    shown2, state2, *_, points2, keep2 = click(shown, state, points, subject_panel.MODE_REMOVE, True, _click(5, 5))
    assert points2 == [[80, 50, 1], [5, 5, 0]] and "value" not in keep2  # left as the user set it
    assert state2["original"] is state["original"]
    # The render with those points: focus on the subject's mask, the subject kept sharp.
    settings = AppSettings(image=shown2, state=state2, points=points2, subject=True, k=16,
                           depth_model="approximate")
    handlers = Handlers(sources)
    (_, after), _, _, status, _, info = handlers.render(settings)
    assert info["focus_rule"] == "points" and info["subject"]["keep_sharp"]
    assert info["subject"]["mask_source"] == "sam" and info["subject"]["points"] == points2
    assert "subject under 2 point(s) (Segment Anything), whole subject kept sharp" in status
    used = sam.PointSegmenter(tiny_sam).segment(np.asarray(original), points2).mask
    before = np.asarray(original).astype(int)
    out = np.asarray(Image.open(after).convert("RGB")).astype(int)
    assert np.abs(out - before).max(-1)[used].max() <= 1


def test_a_click_without_sam_weights_uses_grabcut_and_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    click = subject_panel.click_handler(ModelSources(sam_model="nobody/no-such-sam"))
    with pytest.warns(UserWarning, match="GrabCut"):
        shown, _, _, _, points, _ = click(_photo_file(tmp_path), None, None, subject_panel.MODE_ADD, False,
                                          _click(80, 50))
    found, _ = render_focus.point_mask(np.asarray(Image.open(_photo_file(tmp_path)).convert("RGB")), points,
                                       "nobody/no-such-sam")
    assert found.source == "grabcut" and found.mask[ROWS].mean() > 0.9


def test_bad_clicks_and_points_are_clear_errors(tiny_sam, tmp_path):
    click = subject_panel.click_handler(ModelSources(sam_model=tiny_sam))
    with pytest.raises(gr.Error, match="Add a point on the subject first"):
        click(_photo_file(tmp_path), None, None, subject_panel.MODE_REMOVE, False, _click(5, 5))
    with pytest.raises(gr.Error, match="Upload a photo first"):
        click(None, None, None, subject_panel.MODE_ADD, False, _click(5, 5))
    handlers = Handlers(ModelSources(sam_model=tiny_sam))
    settings = AppSettings(image=_photo_file(tmp_path), points=[[500, 5, 1]], k=8, depth_model="approximate")
    with pytest.raises(gr.Error, match="outside the 160x100 image"):
        handlers.render(settings)


def test_settings_choose_points_pixel_or_auto_and_keep_subject_only_with_a_mask():
    s = AppSettings(points=[[3, 4, 1]], subject=True)
    assert s.focus() == Focus.points([[3, 4, 1]])
    assert s.keep_subject(ModelSources(), s.focus())
    typed = AppSettings(points=[[3, 4, 1]], focus_x=7, focus_y=8, subject=True)
    assert typed.focus().kind == "point" and not typed.keep_subject(ModelSources(), typed.focus())
    auto = AppSettings(subject=True)
    assert auto.focus().kind == "auto" and not auto.keep_subject(ModelSources(), auto.focus())
    req = AppSettings(points=[[3, 4, 1]], subject=True, sweep_kind="focus").sweep_request(
        np.zeros((8, 8, 3), np.float32), "classical", ModelSources(sam_model="x"))
    assert req.subject is False and req.sam_model == "x"


def test_saliency_and_sam_sources_are_read_from_the_environment_never_written(monkeypatch):
    import os

    monkeypatch.setenv("MAGICBOKEH_SALIENCY_MODEL", "/w/model-40")
    monkeypatch.setenv("MAGICBOKEH_SAM_MODEL", "")
    before = dict(os.environ)
    sources = ModelSources.from_env(sam_model="/w/sam")
    assert (sources.saliency_model, sources.sam_model) == ("/w/model-40", "/w/sam")
    assert dict(os.environ) == before
    req = AppSettings(k=4).request(np.zeros((8, 8, 3), np.float32), "classical", sources)
    assert (req.saliency_model, req.sam_model) == ("/w/model-40", "/w/sam")


def test_licence_panel_lists_ldf_and_sam_with_sources_and_what_is_missing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = subject_panel.licence_markdown(ModelSources(sam_model="nobody/no-such-sam"))
    assert "LDF salient-object model" in text and "github.com/weijun-arc/LDF" in text
    assert "no saliency model configured" in text
    assert "Segment Anything" in text and "Apache-2.0" in text and "GrabCut" in text


def test_render_api_old_calls_unchanged_and_new_points_work(tiny_sam, tmp_path):
    from gradio_client import Client, handle_file

    _, demo = app.create(ModelSources(sam_model=tiny_sam))
    _, url, _ = app.launch(demo, port=None, prevent_thread_lock=True, quiet=True, show_error=True,
                           ssr_mode=False, mcp=False)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        photo = _photo_file(tmp_path)
        # An old client: the 19 original parameters, positionally.
        old = client.predict(handle_file(photo), 80, 50, 8, "classical", None, False, 0.0, "circle", 6, 0.0,
                             False, False, "approximate", False, "realesrgan", 0, "auto", True, api_name="/render")
        assert old[2]["focus_point"] == [80, 50] and "subject" not in old[2]
        assert old[2]["focus_rule"] == "point"
        # A new client: points (and the subject option), appended last.
        new = client.predict(handle_file(photo), None, None, 8, "classical", depth_model="approximate",
                             subject=True, points=[[80, 50, 1], [5, 5, 0]], api_name="/render")
        info = new[2]
        assert info["focus_rule"] == "points" and info["subject"]["keep_sharp"]
        assert info["subject"]["mask_source"] == "sam" and info["subject"]["points"] == [[80, 50, 1], [5, 5, 0]]
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="outside the 160x100 image"):
            client.predict(handle_file(photo), None, None, 8, "classical", depth_model="approximate",
                           points=[[900, 5, 1]], api_name="/render")
    finally:
        demo.close()


def test_render_api_subject_without_a_mask_is_a_clear_error(tmp_path):
    from magicbokeh.ui.api import render_api

    render = render_api(Handlers(ModelSources()))
    with pytest.raises(gr.Error, match="subject=true needs a subject mask"):
        render(_photo_file(tmp_path), None, None, 8, subject=True, progress=lambda *a, **k: None)
