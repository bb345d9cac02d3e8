"""Depth metrics for relative (affine-invariant) models: disparity alignment, crops, caps (pure NumPy).

The protocol (supplement Table 1; ``docs/evaluation.md`` writes it down in full):

1. valid pixels: finite ground truth with ``min_depth < gt < max_depth`` inside the dataset's crop;
2. a least-squares scale ``s`` and shift ``t`` per image, fitted on the valid pixels, so that
   ``s * prediction + t`` matches the ground truth's inverse depth ``1 / gt`` (disparity space);
3. the aligned disparity is clipped to ``[1 / max_depth, 1 / min_depth]`` (so it is positive) and
   turned back into depth ``1 / aligned``, which therefore lies in ``[min_depth, max_depth]``;
4. AbsRel, δ1–δ3 and RMSE on the valid pixels of that image; a dataset's score is the mean over
   its images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import MagicBokehError

#: Metric keys, in the order the tables list them.
METRIC_KEYS: tuple[str, ...] = ("abs_rel", "delta1", "delta2", "delta3", "rmse")
#: δ thresholds: max(gt / pred, pred / gt) < 1.25 ** n.
DELTA_BASE = 1.25

#: NYUv2 Eigen crop on the 480 × 640 frames: rows 45:471, columns 41:601.
NYU_EIGEN_CROP: tuple[slice, slice] = (slice(45, 471), slice(41, 601))
NYU_SHAPE: tuple[int, int] = (480, 640)
#: KITTI Garg crop as fractions of the frame: rows, then columns (KITTI frames vary: ~375 × 1242).
GARG_CROP_FRACTIONS: tuple[float, float, float, float] = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


@dataclass(frozen=True)
class DepthProtocol:
    """How a dataset is scored: depth range in metres and crop name.

    Attributes:
        min_depth: smallest valid ground-truth depth, metres (> 0).
        max_depth: largest valid ground-truth depth, metres (> min_depth).
        crop: ``"nyu_eigen"`` (480 × 640 only), ``"kitti_garg"`` (fractions of the frame) or ``"none"``.
    """

    min_depth: float
    max_depth: float
    crop: str = "none"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.min_depth) and np.isfinite(self.max_depth)):
            raise MagicBokehError("--min-depth and --max-depth must be finite numbers of metres.")
        if not 0 < self.min_depth < self.max_depth:
            raise MagicBokehError(
                f"the depth range must satisfy 0 < min < max (metres); got {self.min_depth:g}..{self.max_depth:g}."
            )
        if self.crop not in CROPS:
            raise MagicBokehError(f"unknown crop {self.crop!r}; use one of {', '.join(CROPS)}.")


def nyu_eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of the Eigen crop ``[45:471, 41:601]``; NYUv2 frames are 480 × 640."""
    if (height, width) != NYU_SHAPE:
        raise MagicBokehError(
            f"the NYUv2 Eigen crop needs 480x640 frames; got {height}x{width} (use the labelled .mat as is)."
        )
    mask = np.zeros((height, width), bool)
    mask[NYU_EIGEN_CROP] = True
    return mask


def kitti_garg_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of the Garg crop: rows ``int(0.40810811 H):int(0.99189189 H)``, columns
    ``int(0.03594771 W):int(0.96405229 W)`` (``[151:366, 43:1180]`` on 370 × 1224)."""
    r0, r1, c0, c1 = GARG_CROP_FRACTIONS
    mask = np.zeros((height, width), bool)
    mask[int(r0 * height) : int(r1 * height), int(c0 * width) : int(c1 * width)] = True
    return mask


def no_crop_mask(height: int, width: int) -> np.ndarray:
    """Every pixel."""
    return np.ones((height, width), bool)


CROPS: dict[str, Callable[[int, int], np.ndarray]] = {
    "none": no_crop_mask,
    "nyu_eigen": nyu_eigen_crop_mask,
    "kitti_garg": kitti_garg_crop_mask,
}


def valid_mask(gt_depth: np.ndarray, protocol: DepthProtocol) -> np.ndarray:
    """Pixels that count: finite, ``min_depth < gt < max_depth`` and inside the crop.

    Args:
        gt_depth: (H, W) ground-truth depth in metres; 0, negative or non-finite = invalid.
        protocol: range and crop.

    Returns:
        (H, W) bool.
    """
    gt = np.asarray(gt_depth)
    if gt.ndim != 2:
        raise MagicBokehError(f"a ground-truth depth map must be 2-D (H, W); got shape {gt.shape}.")
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(gt) & (gt > protocol.min_depth) & (gt < protocol.max_depth)
    return in_range & CROPS[protocol.crop](*gt.shape)


def fit_scale_shift(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``sum((s * prediction + t - target) ** 2)`` over ``mask``.

    Computed in float64 in closed form. A prediction that is constant on the mask carries no
    information: ``s = 0`` and ``t`` = the target's mean.
    """
    x = np.asarray(prediction, np.float64)[mask]
    y = np.asarray(target, np.float64)[mask]
    if x.size == 0:
        raise MagicBokehError("cannot align a prediction on zero valid pixels.")
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    var = float(np.dot(dx, dx))
    if var <= 1e-12 * max(x.size, 1) * max(xm * xm, 1.0):
        return 0.0, float(ym)
    s = float(np.dot(dx, y - ym) / var)
    return s, float(ym - s * xm)


def align_to_depth(
    pred_disparity: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray, *, min_depth: float, max_depth: float
) -> np.ndarray:
    """Align a relative disparity to the ground truth in disparity space and return metric depth.

    Args:
        pred_disparity: (H, W) prediction, any affine scale, larger = nearer (finite).
        gt_depth: (H, W) ground-truth depth in metres.
        mask: (H, W) bool, the pixels the scale and shift are fitted on (at least one).
        min_depth, max_depth: the dataset's range in metres.

    Returns:
        (H, W) float64 depth in metres, in ``[min_depth, max_depth]``: ``1 / clip(s * pred + t,
        1 / max_depth, 1 / min_depth)``.
    """
    pred = np.asarray(pred_disparity, np.float64)
    gt = np.asarray(gt_depth, np.float64)
    if pred.shape != gt.shape:
        raise MagicBokehError(f"prediction is {pred.shape} but the ground truth is {gt.shape}.")
    target = np.zeros_like(gt)
    target[mask] = 1.0 / gt[mask]
    s, t = fit_scale_shift(pred, target, mask)
    aligned = np.clip(s * pred + t, 1.0 / max_depth, 1.0 / min_depth)
    return np.clip(1.0 / aligned, min_depth, max_depth)


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """AbsRel, δ1, δ2, δ3 (fractions in [0, 1]) and RMSE (metres) over the ``mask`` pixels.

    AbsRel = mean(|pred - gt| / gt); δn = fraction with max(gt / pred, pred / gt) < 1.25 ** n;
    RMSE = sqrt(mean((pred - gt) ** 2)). ``pred`` must be positive on the mask.
    """
    p = np.asarray(pred_depth, np.float64)[mask]
    g = np.asarray(gt_depth, np.float64)[mask]
    if g.size == 0:
        raise MagicBokehError("cannot score a prediction on zero valid pixels.")
    if np.any(p <= 0) or np.any(g <= 0):
        raise MagicBokehError("depth metrics need positive depths on the valid pixels.")
    ratio = np.maximum(g / p, p / g)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "delta1": float(np.mean(ratio < DELTA_BASE)),
        "delta2": float(np.mean(ratio < DELTA_BASE**2)),
        "delta3": float(np.mean(ratio < DELTA_BASE**3)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
    }


def evaluate_disparity(
    pred_disparity: np.ndarray, gt_depth: np.ndarray, protocol: DepthProtocol, mask: np.ndarray | None = None
) -> dict[str, float]:
    """The whole per-image protocol: valid mask, disparity alignment, back to depth, metrics.

    Args:
        pred_disparity: (H, W) relative disparity of any affine scale (larger = nearer), at the
            ground truth's size.
        gt_depth: (H, W) ground-truth depth in metres (0 / non-finite = invalid).
        protocol: the dataset's range and crop.
        mask: the valid mask when already computed (:func:`valid_mask`).

    Returns:
        ``{"abs_rel", "delta1", "delta2", "delta3", "rmse"}`` for this image.
    """
    if mask is None:
        mask = valid_mask(gt_depth, protocol)
    if not mask.any():
        raise MagicBokehError("the ground truth has no valid pixel inside the crop and depth range.")
    pred = np.asarray(pred_disparity, np.float64)
    if not np.all(np.isfinite(pred[mask])):
        raise MagicBokehError("the prediction has NaN or infinite values on valid pixels.")
    depth = align_to_depth(pred, gt_depth, mask, min_depth=protocol.min_depth, max_depth=protocol.max_depth)
    return depth_metrics(depth, gt_depth, mask)


def mean_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images (each image weighs the same)."""
    if not per_image:
        raise MagicBokehError("no image was scored.")
    return {k: float(np.mean([m[k] for m in per_image])) for k in METRIC_KEYS}
