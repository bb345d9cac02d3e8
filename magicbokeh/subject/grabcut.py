"""A subject from clicks without any model weights: OpenCV GrabCut seeded by the points.

Used when Segment Anything is not available (offline, nothing cached). GrabCut models the colours
of the subject and the background with Gaussian mixtures and cuts the photo along colour edges; the
clicked discs are fixed as subject (positive) or background (negative), everything else starts as
"probably background". It runs on a copy at most :data:`WORK_SIDE` pixels wide (it is slow), and the
result keeps only the regions connected to a positive click.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Longest side GrabCut works at (px); the mask is resized back to the photo.
WORK_SIDE = 512
ITERATIONS = 5


def grabcut_subject(rgb_u8: np.ndarray, points: Sequence[tuple[float, float, int]]) -> np.ndarray:
    """(H, W) bool subject mask from validated points ``(x, y, label)`` (see ``masks.check_points``)."""
    import cv2

    h, w = rgb_u8.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    sw, sh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    small = cv2.resize(rgb_u8, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else rgb_u8.copy()
    bgr = np.ascontiguousarray(small[..., ::-1])
    seed = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    radius = max(3, int(round(0.02 * min(sh, sw))))
    # A wider "probably subject" disc around each positive click gives GrabCut a foreground model.
    for x, y, label in points:
        if label == 1:
            cv2.circle(seed, (int(x * scale), int(y * scale)), radius * 6, int(cv2.GC_PR_FGD), -1)
    for x, y, label in points:
        value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
        cv2.circle(seed, (int(x * scale), int(y * scale)), radius, int(value), -1)
    if not (seed == cv2.GC_PR_BGD).any():  # GrabCut needs some background samples
        seed[0, :] = seed[-1, :] = seed[:, 0] = seed[:, -1] = cv2.GC_PR_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, seed, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    fg = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the regions that contain a positive click (GrabCut may also pick similar colours elsewhere).
    _, labels = cv2.connectedComponents(fg, connectivity=8)
    keep = {int(labels[min(int(y * scale), sh - 1), min(int(x * scale), sw - 1)])
            for x, y, label in points if label == 1}
    keep.discard(0)
    fg = np.isin(labels, sorted(keep)) if keep else fg.astype(bool)
    if scale < 1:
        fg = cv2.resize(fg.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) >= 128
    return fg.astype(bool)
