"""Subject focus through the real render road (pipeline.run and the CLI): keeping a whole subject
sharp, point prompts, the official automatic-focus rule, --save-mask, and bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from magicbokeh.cli import main
from magicbokeh.errors import MagicBokehError
from magicbokeh.focus import defocus_map, in_focus_mask, model_condition, signed_coc_radius_px
from magicbokeh.pipeline import run
from magicbokeh.request import Focus, RenderRequest, RenderSettings
from magicbokeh.subject import ldf, render_focus, sam
from magicbokeh.subject.defocus import apply_subject_weight, subject_weight, weighted_disparity
from test_sam import _build_tiny_sam

K = 16.0
FAR = 0.0  # the scene spans [0, 1], so the core's min-max normalisation of a supplied map keeps it
H, W = 120, 160
BOARD = (slice(45, 75), slice(50, 110))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MAGICBOKEH_SALIENCY_MODEL", raising=False)
    monkeypatch.delenv("MAGICBOKEH_SAM_MODEL", raising=False)
    for cache in (ldf._MODELS, sam._SEGMENTERS, render_focus._cache):
        cache.clear()
    yield
    for cache in (ldf._MODELS, sam._SEGMENTERS, render_focus._cache):
        cache.clear()


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> str:
    return _build_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


def _scene():
    """A textured photo; a board tilted in depth (disparity 0.5 -> 1 left to right) before a far plane."""
    disparity = np.full((H, W), FAR, np.float32)
    disparity[BOARD] = np.linspace(0.5, 1.0, 60, dtype=np.float32)[None, :]
    board = np.zeros((H, W), bool)
    board[BOARD] = True
    photo = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return photo, disparity, board


def _files(tmp_path):
    photo, disparity, board = _scene()
    Image.fromarray(photo).save(tmp_path / "photo.png")
    cv2.imwrite(str(tmp_path / "disp.png"), (disparity * 65535 + 0.5).astype(np.uint16))
    cv2.imwrite(str(tmp_path / "board.png"), board.astype(np.uint8) * 255)
    return photo, board


def _far_from(board: np.ndarray, px: float) -> np.ndarray:
    return cv2.distanceTransform((~board).astype(np.uint8), cv2.DIST_L2, 5) >= px


def _u8(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_cli_subject_keeps_the_tilted_board_sharp_and_the_far_background_unchanged(tmp_path, capsys):
    photo, board = _files(tmp_path)
    common = ["render", str(tmp_path / "photo.png"), "--depth", str(tmp_path / "disp.png"),
              "--focus-mask", str(tmp_path / "board.png"), "--K", str(K), "--json", "-q"]
    assert main([*common, "-o", str(tmp_path / "official.png")]) == 0
    official_info = json.loads(capsys.readouterr().out)
    assert main([*common, "-o", str(tmp_path / "subject.png"), "--subject",
                 "--save-mask", str(tmp_path / "used.png")]) == 0
    info = json.loads(capsys.readouterr().out)
    official, kept = _u8(tmp_path / "official.png"), _u8(tmp_path / "subject.png")
    err_official = np.abs(official - photo).max(-1)
    err_kept = np.abs(kept - photo).max(-1)
    # --focus-mask only (official): the board's ends are 0.25 of disparity off the median plane.
    assert err_official[BOARD][:, [0, 1, -2, -1]].mean() > 20
    # --subject: every board pixel equals the input within one level.
    assert err_kept[board].max() <= 1
    # The far background (beyond twice the largest blur radius of the scene) is bit for bit the same.
    far = _far_from(board, 2 * K * 0.75 + 2)
    assert np.array_equal(official[far], kept[far])
    # Same focal plane (the official lower median under the mask); the JSON names the mask used.
    ramp = np.sort(np.repeat(np.linspace(0.5, 1.0, 60, dtype=np.float32), 30))
    assert info["focus_disparity"] == pytest.approx(float(ramp[(ramp.size - 1) // 2]), abs=1e-4)
    assert info["focus_disparity"] == official_info["focus_disparity"]
    assert info["focus_rule"] == official_info["focus_rule"] == "mask"
    assert info["subject"]["keep_sharp"] and info["subject"]["mask_source"] == "file"
    assert info["subject"]["mask_model"] == str(tmp_path / "board.png")
    assert not official_info["subject"]["keep_sharp"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "used.png")) > 0, board)


def test_without_subject_the_maps_are_exactly_official():
    photo, disparity, board = _scene()
    res = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(board), settings=RenderSettings(k=K)))
    ramp = np.sort(disparity[board])
    f = float(ramp[(ramp.size - 1) // 2])
    assert res.focus_disparity == f
    assert np.array_equal(res.defocus, defocus_map(disparity, f, K))
    assert np.array_equal(res.in_focus, in_focus_mask(defocus_map(disparity, f, K)))


def test_subject_maps_are_zero_on_the_subject_and_official_beyond_the_feather():
    photo, disparity, board = _scene()
    res = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(board), settings=RenderSettings(k=K),
                            subject=True))
    official = defocus_map(disparity, res.focus_disparity, K)
    assert np.all(res.defocus[board] == 0) and res.in_focus[board].all()
    far = _far_from(board, 3)
    assert np.array_equal(res.defocus[far], official[far])
    assert np.array_equal(res.in_focus[far], in_focus_mask(official)[far])
    assert any("Subject kept sharp" in m for m in res.messages)


def test_weighted_disparity_scales_the_signed_coc_by_the_weight():
    rng = np.random.default_rng(3)
    d = rng.random((40, 50), dtype=np.float32)
    subject = np.zeros((40, 50), bool)
    subject[10:30, 15:35] = True
    w = subject_weight(subject, 2.0)
    for focal_range in (0.0, 0.2):
        f = 0.45
        ref = signed_coc_radius_px(d, f, K, focal_range=focal_range) * w
        got = signed_coc_radius_px(weighted_disparity(d, f, w, focal_range=focal_range), f, K, focal_range=focal_range)
        np.testing.assert_allclose(got, ref, atol=1e-4)
        assert np.all(got[subject] == 0)
        assert np.array_equal(weighted_disparity(d, f, w, focal_range=focal_range)[w == 1], d[w == 1])
    assert weighted_disparity(d, 0.4, None) is not None


def test_diffusion_condition_with_a_subject_is_the_union_of_subject_and_official_in_focus():
    """The MagicBokeh backend's attention mask (our extension), from the official condition."""
    _, disparity, board = _scene()
    cond = model_condition(disparity, 0.7, K)
    w = subject_weight(board, 2.0)
    defocus, in_focus = apply_subject_weight(cond.defocus, cond.in_focus, w)
    assert np.array_equal(in_focus, (cond.defocus <= 0.1) | board)
    assert np.all(defocus[board] == 0)
    assert np.array_equal(defocus[w == 1], cond.defocus[w == 1])
    assert apply_subject_weight(cond.defocus, cond.in_focus, None) == (cond.defocus, cond.in_focus)


def test_magicbokeh_backend_receives_the_subject_condition(monkeypatch):
    """Through pipeline.run: the diffusion pipeline is handed the weighted defocus and the union mask."""
    from types import SimpleNamespace

    from magicbokeh.backends import Availability, get_backend

    backend = get_backend("magicbokeh")
    seen = {}

    def fake_render(image, defocus, in_focus, **kw):
        seen.update(defocus=defocus, in_focus=in_focus)
        return SimpleNamespace(image=image, stats={"tiles": 1, "batch": 1, "cached": 0}, timings={})

    model = SimpleNamespace(describe=lambda: "fake", tile_size=512, info={})
    monkeypatch.setattr(backend, "pipeline", lambda opts, progress=None: SimpleNamespace(render=fake_render, model=model))
    monkeypatch.setattr(backend, "availability", lambda options=None: Availability(True))
    photo, disparity, board = _scene()
    for subject in (False, True):
        res = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(board),
                                settings=RenderSettings(k=K, backend="magicbokeh"), subject=subject))
        cond = model_condition(disparity, res.focus_disparity, K)
        if not subject:
            assert np.array_equal(seen["in_focus"], cond.in_focus)
            assert np.array_equal(seen["defocus"], cond.defocus)
        else:
            assert np.array_equal(seen["in_focus"], cond.in_focus | board)
            assert np.all(seen["defocus"][board] == 0)
            far = _far_from(board, 3)
            assert np.array_equal(seen["defocus"][far], cond.defocus[far])


def test_points_select_the_subject_with_sam_and_focus_on_it(tiny_sam, tmp_path, capsys):
    photo, disparity, _ = _scene()
    points = [[80, 60, 1], [10, 10, 0]]
    res = run(RenderRequest(photo, depth=disparity, focus=Focus.points(points), settings=RenderSettings(k=K),
                            sam_model=tiny_sam))
    # Reference: the tiny SAM's own mask for these points, and the official lower median under it.
    ref = sam.PointSegmenter(tiny_sam).segment(photo, points).mask
    vals = np.sort(disparity[ref])
    assert res.focus_disparity == float(vals[(vals.size - 1) // 2])
    assert np.array_equal(res.subject_mask > 0, ref)
    info = res.info()
    assert info["focus_rule"] == "points"
    assert info["subject"]["mask_source"] == "sam" and info["subject"]["mask_model"] == tiny_sam
    assert info["subject"]["points"] == [[80.0, 60.0, 1], [10.0, 10.0, 0]]
    # The CLI's --point is the same road; --save-mask writes that mask.
    Image.fromarray(photo).save(tmp_path / "p.png")
    np.save(tmp_path / "d.npy", disparity)
    assert main(["render", str(tmp_path / "p.png"), "-o", str(tmp_path / "o.png"), "--depth", str(tmp_path / "d.npy"),
                 "--point", "80,60", "--point", "10,10,0", "--sam-model", tiny_sam, "--subject",
                 "--save-mask", str(tmp_path / "m.png"), "--json", "-q"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["subject"]["mask_source"] == "sam" and cli["subject"]["keep_sharp"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")) > 0, ref)


def test_points_without_sam_weights_fall_back_to_grabcut_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo, disparity, board = _scene()
    photo[board] = (230, 40, 40)  # a flat red board: GrabCut finds it from one click
    res = run(RenderRequest(photo, depth=disparity, focus=Focus.points([[80, 60, 1]]),
                            settings=RenderSettings(k=K), sam_model="nobody/no-such-sam", subject=True))
    info = res.info()
    assert info["subject"]["mask_source"] == "grabcut" and info["subject"]["mask_model"] == "opencv-grabcut"
    assert any("GrabCut" in m for m in res.messages)
    assert (res.subject_mask > 0)[board].mean() > 0.9


def test_automatic_focus_reports_the_heuristic_without_a_saliency_model():
    photo, disparity, _ = _scene()
    res = run(RenderRequest(photo, depth=disparity, settings=RenderSettings(k=K)))
    info = res.info()
    assert info["focus_rule"] == "heuristic" and "subject" not in info
    assert res.subject_mask is None
    nearest = disparity[disparity >= np.quantile(disparity, 0.8)]
    assert res.focus_disparity == float(np.median(nearest))
    assert any("nearest large region" in m for m in res.messages)


def test_automatic_focus_applies_the_official_rule_to_the_ldf_mask(tmp_path):
    from magicbokeh.subject.ldf_net import LDF

    torch.manual_seed(0)
    pth = tmp_path / "model-40"
    torch.save(LDF().state_dict(), pth)
    photo, disparity, _ = _scene()
    disparity = (disparity + np.linspace(0, 0.05, W, dtype=np.float32)[None, :]).clip(0, 1)
    res = run(RenderRequest(photo, depth=disparity, settings=RenderSettings(k=K), saliency_model=str(pth),
                            subject=True))
    # Reference: F's mask function on the same weights, and the lower median where it is non-zero.
    mask = ldf.saliency_mask(ldf.load_ldf(pth), photo, size=(H, W))
    vals = np.sort(disparity[mask > 0])
    assert res.focus_disparity == pytest.approx(float(vals[(vals.size - 1) // 2]))
    info = res.info()
    assert info["focus_rule"] == "saliency"
    assert info["subject"]["mask_source"] == "ldf" and info["subject"]["mask_model"] == str(pth)
    assert np.array_equal(res.subject_mask, mask)
    assert np.all(res.defocus[mask >= 128] == 0)


@pytest.mark.parametrize("argv, message", [
    (["--subject"], "needs a subject mask"),
    (["--save-mask", "{tmp}/m.png"], "needs a subject mask"),
    (["--focus", "3,3", "--subject"], "--focus gives none"),
    (["--point", "5,5", "--focus", "3,3"], "do not combine"),
    (["--point", "500,5"], "outside the 160x120 image"),
    (["--focus-mask", "{tmp}/small.png"], "is 20x10 but the image is 160x120"),
    (["--focus-mask", "{tmp}/empty.png", "--subject"], "empty"),
    (["--saliency-model", "{tmp}/nothing"], "not a file"),
    (["--focus-mask", "{tmp}/board.png", "--save-mask", "{tmp}/m.jpg"], "--save-mask"),
])
def test_bad_subject_input_is_one_clear_line(tmp_path, capsys, argv, message):
    _files(tmp_path)
    cv2.imwrite(str(tmp_path / "small.png"), np.full((10, 20), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((H, W), np.uint8))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(["render", str(tmp_path / "photo.png"), "-o", str(tmp_path / "o.png"),
                 "--depth", str(tmp_path / "disp.png"), "-q", *argv])
    err = capsys.readouterr().err
    assert code != 0 and message in err
    assert not (tmp_path / "o.png").exists()


def test_sweep_accepts_the_subject_options(tmp_path, capsys):
    photo, board = _files(tmp_path)
    out = tmp_path / "frames"
    assert main(["sweep", str(tmp_path / "photo.png"), "-o", str(out), "--depth", str(tmp_path / "disp.png"),
                 "--focus-mask", str(tmp_path / "board.png"), "--subject", "--frames", "2", "--k-max", "16",
                 "--save-mask", str(tmp_path / "m.png"), "--json", "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["subject"]["keep_sharp"] and info["focus_rule"] == "mask"
    last = _u8(out / "frame_001.png")
    assert np.abs(last - photo).max(-1)[board].max() <= 1
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")) > 0, board)
    code = main(["sweep", str(tmp_path / "photo.png"), "-o", str(tmp_path / "f.gif"), "--kind", "focus",
                 "--depth", str(tmp_path / "disp.png"), "--focus-mask", str(tmp_path / "board.png"),
                 "--subject", "-q"])
    assert code != 0 and "focus sweep" in capsys.readouterr().err


def test_subject_at_a_smaller_processing_size(tiny_sam):
    """Points are in the input's pixels; the mask is made there, downscaled with the photo, and the
    mask reported is at the result's (input) size."""
    photo, disparity, board = _scene()
    res = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(board), settings=RenderSettings(k=K),
                            max_side=80, subject=True))
    assert res.image.shape == photo.shape and res.subject_mask.shape == (H, W)
    # Reference: the same road at K = 0 (only the down- and up-sampling), on the board away from its edge.
    resampled = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(board), settings=RenderSettings(k=0),
                                  max_side=80)).image
    inner = np.zeros_like(board)
    inner[50:70, 56:104] = True
    assert np.abs(res.image - resampled).max(-1)[inner].max() <= 1 / 255
    blurred = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(board), settings=RenderSettings(k=K),
                                max_side=80)).image
    assert np.abs(blurred - resampled).max(-1)[inner].max() > 10 / 255  # without the option the ends blur
    points = run(RenderRequest(photo, depth=disparity, focus=Focus.points([[80, 60, 1]]),
                               settings=RenderSettings(k=K), max_side=80, sam_model=tiny_sam))
    ref = sam.PointSegmenter(tiny_sam).segment(photo, [[80, 60, 1]]).mask
    assert points.subject_mask.shape == (H, W)
    # The tiny random SAM's mask is speckled, so a 2x down- and up-sampling changes a few % of it.
    assert np.mean((points.subject_mask >= 128) == ref) > 0.9
    assert points.info()["subject"]["points"] == [[80.0, 60.0, 1]]  # in the input's pixels


def test_an_empty_focus_mask_keeps_the_official_rule_and_says_so():
    photo, disparity, board = _scene()
    res = run(RenderRequest(photo, depth=disparity, focus=Focus.mask(np.zeros_like(board)),
                            settings=RenderSettings(k=K)))
    assert res.focus_disparity == 0.0  # inference.py: an empty mask focuses on the farthest plane
    assert any("subject mask is empty" in m for m in res.messages)
