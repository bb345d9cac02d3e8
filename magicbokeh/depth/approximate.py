"""A weight-free stand-in for depth: subject cut-out (GrabCut) in front of a ground-plane ramp."""

from __future__ import annotations

import numpy as np

APPROXIMATE_LABEL = "approximate depth (subject cut-out + ground-plane ramp, no model)"


def approximate_disparity(
    rgb: np.ndarray,
    seed_xy: tuple[int, int] | None = None,
    *,
    subject_mask: np.ndarray | None = None,
) -> np.ndarray:
    """A weight-free stand-in for depth, so click-to-focus stays useful with no model.

    The subject (``subject_mask`` > 0 when given, else the region around ``seed_xy`` — default the
    image centre — cut out with OpenCV GrabCut) is placed in front at disparity 0.9; the rest is a
    ground-plane ramp from 0.05 (top, far) to 0.6 (bottom, near). Always labelled approximate.
    """
    import cv2

    h, w = rgb.shape[:2]
    ramp = np.linspace(0.05, 0.6, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    if subject_mask is not None:
        return np.where(np.asarray(subject_mask) > 0, np.float32(0.9), ramp).astype(np.float32)
    scale = min(1.0, 320.0 / max(h, w))
    sw, sh = max(int(round(w * scale)), 8), max(int(round(h * scale)), 8)
    small = cv2.resize(
        (np.clip(rgb, 0, 1) * 255).astype(np.uint8)[..., ::-1], (sw, sh), interpolation=cv2.INTER_AREA
    )
    cx, cy = seed_xy if seed_xy is not None else (w // 2, h // 2)
    sx, sy = min(int(cx * scale), sw - 1), min(int(cy * scale), sh - 1)
    mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    bw, bh = max(sw // 3, 4), max(sh // 3, 4)
    mask[max(sy - bh, 0) : sy + bh + 1, max(sx - bw, 0) : sx + bw + 1] = cv2.GC_PR_FGD
    border = max(2, min(sw, sh) // 50)
    mask[:border, :] = mask[-border:, :] = cv2.GC_BGD
    mask[:, :border] = mask[:, -border:] = cv2.GC_BGD
    seed_r = max(2, min(sw, sh) // 40)
    cv2.circle(mask, (sx, sy), seed_r, cv2.GC_FGD, -1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        subject = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    except cv2.error:  # degenerate images (flat colour): keep just the seed
        subject = (mask == cv2.GC_FGD).astype(np.uint8)
    # Keep only the connected piece that holds the seed.
    _, labels = cv2.connectedComponents(subject)
    subject = labels == labels[sy, sx] if subject[sy, sx] else subject.astype(bool)
    subject = cv2.resize(subject.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return np.where(subject, np.float32(0.9), ramp).astype(np.float32)
