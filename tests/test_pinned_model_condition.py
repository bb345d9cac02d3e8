"""Pinned model condition: what the diffusion network receives, in closed form at K != 32.

``official-model.md`` §1.2 steps 2, 7 and 9: disparity truncated to 8 bits, focus truncated to 8 bits
(the median/pixel of 8-bit values), ``disp_k = |d - f| * K / 32``, ControlNet condition
``disp_k * 2 - 1`` on three channels, in-focus mask ``disp_k <= 0.1``; tiles of 512 (here the tiny
model's 64) at stride half a tile. The expected tensors are computed here from those formulas, not
with :mod:`magicbokeh.focus`, and compared with what the tiny model's forward really gets.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusion_fixtures import TILE, diffusion_cache, tiny_assets, tiny_options, torch_single_thread  # noqa: F401

from magicbokeh.focus import model_condition

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _closed_form(disp: np.ndarray, f: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    dq = np.floor(disp.astype(np.float64) * 255) / 255
    fq = np.floor(f * 255) / 255
    dk = np.abs(dq - fq) * k / 32
    return dk, dk <= 0.1


def _scene(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # Off-grid values (x.4 / 255 and x.6 / 255) so truncation and rounding differ everywhere.
    levels = np.floor(20 + 200 * (xx / (w - 1)) * (0.5 + 0.5 * yy / (h - 1))) + np.where((xx + yy) % 2, 0.4, 0.6)
    return (levels / 255).astype(np.float32)


@pytest.mark.parametrize("k", [12.0, 20.0])
def test_model_condition_in_closed_form(k: float) -> None:
    disp = _scene(40, 50)
    f = 120.7 / 255
    cond = model_condition(disp, f, k)
    dk, inside = _closed_form(disp, f, k)
    np.testing.assert_allclose(cond.defocus, dk, atol=1e-6)
    assert float(cond.focus_disparity) == pytest.approx(120 / 255, abs=1e-7)
    away = np.abs(dk - 0.1) > 1e-5
    np.testing.assert_array_equal(np.asarray(cond.in_focus)[away], inside[away])
    assert 0 < inside.mean() < 1  # both classes present


def test_the_network_receives_the_closed_form_condition(tiny_assets, diffusion_cache, monkeypatch) -> None:
    from magicbokeh.diffusion import pipeline as diffusion_pipeline
    from magicbokeh.diffusion.backend import MagicBokehBackend

    seen_cond, seen_masks = [], []
    real_predict, real_mask = diffusion_pipeline.predict_x0, diffusion_pipeline.focus_mask

    def predict(unet, controlnet, latents, cond, *args, **kwargs):
        seen_cond.append(cond.detach().float().cpu().clone())
        return real_predict(unet, controlnet, latents, cond, *args, **kwargs)

    def mask(config, masks, *args, **kwargs):
        seen_masks.append(masks.detach().cpu().clone())
        return real_mask(config, masks, *args, **kwargs)

    monkeypatch.setattr(diffusion_pipeline, "predict_x0", predict)
    monkeypatch.setattr(diffusion_pipeline, "focus_mask", mask)

    h, w = TILE, TILE + TILE // 2  # two tiles: (0, 0) and (0, TILE / 2)
    disp = _scene(h, w)
    img = np.full((h, w, 3), 0.5, np.float32)
    f, k = 120.7 / 255, 12.0
    MagicBokehBackend().render(img, disp, f, k, options=tiny_options(tiny_assets, color_fix="none"), image_key="p")

    cond = torch.cat(seen_cond)
    masks = torch.cat(seen_masks)
    assert cond.shape == (2, 3, TILE, TILE) and masks.shape == (2, TILE, TILE)
    dk, inside = _closed_form(disp, f, k)
    for i, left in enumerate((0, TILE // 2)):
        tile_dk = dk[:, left : left + TILE]
        for c in range(3):
            np.testing.assert_allclose(cond[i, c].numpy(), tile_dk * 2 - 1, atol=1e-6)
        away = np.abs(tile_dk - 0.1) > 1e-5
        np.testing.assert_array_equal(masks[i].numpy().astype(bool)[away], inside[:, left : left + TILE][away])
