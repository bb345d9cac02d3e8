"""Layered scenes for synthetic bokeh: procedural textures and shapes, or photos and cut-outs.

A scene is one background (a slanted plane with random depth variation) and two foreground cut-outs
(fronto-parallel planes), each a *complete* RGBA layer at the output size, ordered far -> near as
:func:`magicbokeh.data.raytrace.render_thin_lens` expects. Source files are discovered once per folder
(:func:`list_backgrounds`, :func:`list_foregrounds`) and drawn by a seeded ``numpy`` generator, so a
scene depends only on the generator state and the sorted folder contents.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..errors import MagicBokehError
from ..images import IMAGE_SUFFIXES, load_photo
from .raytrace import Layer

logger = logging.getLogger(__name__)

PROCEDURAL = "procedural"
#: Longer side of a placed foreground, as a fraction of the output size.
FOREGROUND_SCALE = (0.3, 0.7)
#: Supersampling factor for anti-aliased procedural shapes.
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ForegroundSource:
    """A cut-out on disk: an RGBA file, or an image plus a matte (grey, 255 = opaque)."""

    name: str  # relative to the foregrounds folder, POSIX form
    image: Path
    matte: Path | None = None


# --------------------------------------------------------------------------------------------------
# Source discovery


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def _check_folder(folder: str | Path, what: str) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise MagicBokehError(f"--{what} folder {str(path)!r} does not exist; pass a folder of images.")
    return path.resolve()


@functools.lru_cache(maxsize=8)
def list_backgrounds(folder: str | Path, size: int) -> tuple[tuple[str, Path], ...]:
    """``(name, path)`` of every background image under ``folder``, sorted by relative name.

    A background must be at least ``size`` px on both sides: it is cropped, never upscaled, because
    an upscaled photo would teach the model soft "ground truth". Smaller images are rejected with
    their names so the user can remove them or lower ``--size``.
    """
    root = _check_folder(folder, "backgrounds")
    files = _image_files(root)
    if not files:
        raise MagicBokehError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in --backgrounds {str(root)!r}.")
    small = []
    for path in files:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except Exception as exc:  # an unreadable file is named, not a traceback
            raise MagicBokehError(f"cannot read background {path.name!r}: {exc}") from None
        if min(w, h) < size:
            small.append(f"{path.relative_to(root).as_posix()} ({w}x{h})")
    if small:
        listed = ", ".join(small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
        raise MagicBokehError(
            f"{len(small)} background(s) are smaller than --size {size}: {listed}; remove them or lower --size "
            "(backgrounds are cropped, never upscaled)."
        )
    return tuple((p.relative_to(root).as_posix(), p) for p in files)


def _has_alpha(path: Path) -> bool:
    with Image.open(path) as img:
        return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


@functools.lru_cache(maxsize=8)
def list_foregrounds(folder: str | Path) -> tuple[tuple[ForegroundSource, ...], tuple[str, ...]]:
    """Cut-outs under ``folder`` and the names skipped (with a warning each).

    Two layouts: ``folder/images/NAME.*`` + ``folder/mattes/NAME.*`` matched by stem, or image files
    with an alpha channel (RGBA PNG) anywhere under ``folder``. Files without alpha (or images
    without a matte) are skipped, not fatal.
    """
    root = _check_folder(folder, "foregrounds")
    found: list[ForegroundSource] = []
    skipped: list[str] = []
    if (root / "images").is_dir() and (root / "mattes").is_dir():
        mattes = {p.stem: p for p in _image_files(root / "mattes")}
        for path in _image_files(root / "images"):
            name = path.relative_to(root).as_posix()
            if path.stem in mattes:
                found.append(ForegroundSource(name, path, mattes[path.stem]))
            else:
                skipped.append(name)
                logger.warning("skipping foreground %s: no matte named %s.* in mattes/", name, path.stem)
    else:
        for path in _image_files(root):
            name = path.relative_to(root).as_posix()
            try:
                ok = _has_alpha(path)
            except Exception:
                ok = False
            if ok:
                found.append(ForegroundSource(name, path))
            else:
                skipped.append(name)
                logger.warning(
                    "skipping foreground %s: it has no alpha channel (save cut-outs as RGBA PNG, or use "
                    "images/ + mattes/ subfolders)",
                    name,
                )
    if skipped:
        total = len(skipped) + len(found)
        logger.warning("skipped %d of %d foreground file(s) without alpha", len(skipped), total)
    if not found:
        raise MagicBokehError(
            f"no usable foreground cut-outs in {str(root)!r}: give RGBA PNGs, or images/ + mattes/ subfolders "
            "with matching file names."
        )
    return tuple(found), tuple(skipped)


# --------------------------------------------------------------------------------------------------
# Textures and layers


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 3) -> np.ndarray:
    """(size, size, channels) float32 smooth random field in about [0, 1]; ``cells`` = features per side."""
    cells = max(int(cells), 2)
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(size, size, channels), 0.0, 1.0)


def procedural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 sRGB texture in [0, 1]: colour fields, stripes and fine grain."""
    base = rng.uniform(0.15, 0.85, 3).astype(np.float32)
    colour = 0.6 * base + 0.4 * smooth_noise(rng, size, rng.integers(2, 6))
    detail = smooth_noise(rng, size, rng.integers(8, 32), 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, math.pi)
    freq = rng.uniform(3, 20)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
    grain = rng.random((size, size, 1)).astype(np.float32)
    tex = colour * (0.7 + 0.3 * detail) * (0.85 + 0.15 * stripes[..., None]) + 0.05 * (grain - 0.5)
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def add_highlights(
    rgb: np.ndarray, rng: np.random.Generator, count: int, mask: np.ndarray | None = None
) -> None:
    """Paint ``count`` small bright points (radius 0.7-3.5 px, near white) in place; inside ``mask`` if given.

    Bright points become visible bokeh balls, which a model must learn to render.
    """
    size = rgb.shape[0]
    for _ in range(int(count)):
        x, y = rng.uniform(0, size, 2)
        if mask is not None and mask[min(int(y), size - 1), min(int(x), size - 1)] < 0.5:
            continue
        radius = rng.uniform(0.7, 3.5)
        tint = rng.uniform(0.9, 1.0, 3)
        disc = _disc_alpha(size, x, y, radius)
        rgb[:] = rgb * (1 - disc[..., None]) + tint.astype(np.float32) * disc[..., None]


def _disc_alpha(size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """Anti-aliased disc coverage (size, size) float32: 1 inside, a 1 px ramp at the edge."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.clip(radius + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def procedural_shape_alpha(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float32 alpha of a disc or polygon with anti-aliased, slightly soft edges."""
    s = _SUPERSAMPLE
    big = np.zeros((size * s, size * s), np.uint8)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size * s
    radius = rng.uniform(*FOREGROUND_SCALE) * 0.5 * size * s
    if rng.random() < 0.4:
        cv2.ellipse(big, (int(cx), int(cy)), (int(radius), int(radius * rng.uniform(0.6, 1.0))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_8)
    else:
        sides = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, sides))
        radii = radius * rng.uniform(0.6, 1.0, sides)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(big, [np.round(pts).astype(np.int32)], 255, cv2.LINE_8)
    alpha = cv2.resize(big.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    soft = rng.uniform(0.0, 1.0)  # extra edge softness (px), as real mattes have
    if soft > 0.3:
        alpha = cv2.GaussianBlur(alpha, (0, 0), soft)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def crop_background(rgb: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (side between ``size`` and the short side), resized to ``size``."""
    h, w = rgb.shape[:2]
    short = min(h, w)
    if short < size:
        raise MagicBokehError(f"background is {w}x{h}, smaller than --size {size}; remove it or lower --size.")
    side = int(rng.integers(size, short + 1))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = rgb[y0 : y0 + side, x0 : x0 + side]
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop, dtype=np.float32)


def background_disparity(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float64 raw disparity of a slanted background with smooth relief, about [0, 0.4].

    Mostly a ground-like tilt (nearer at the bottom), a small sideways tilt, and low-frequency bumps:
    the "random depth variation in the background" of the paper's data.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    tilt_y = rng.uniform(0.05, 0.3)
    tilt_x = rng.uniform(-0.1, 0.1)
    bumps = smooth_noise(rng, size, rng.integers(2, 5), 1)[..., 0].astype(np.float64)
    return 0.05 + tilt_y * yy + tilt_x * (xx - 0.5) + rng.uniform(0.02, 0.08) * bumps


def load_cutout(source: ForegroundSource) -> np.ndarray:
    """(h, w, 4) float32 straight sRGB + alpha of a cut-out, cropped to its alpha's bounding box."""
    if source.matte is None:
        with Image.open(source.image) as img:
            rgba = np.asarray(img.convert("RGBA"), np.float32) / 255.0
    else:
        rgb = load_photo(source.image).rgb
        with Image.open(source.matte) as img:
            matte = np.asarray(img.convert("L"), np.float32) / 255.0
        if matte.shape != rgb.shape[:2]:
            logger.warning(
                "matte of %s is %s, image %s: resizing the matte", source.name, matte.shape, rgb.shape[:2]
            )
            matte = cv2.resize(matte, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        rgba = np.concatenate([rgb, matte[..., None]], axis=2)
    ys = np.flatnonzero(rgba[..., 3].max(axis=1) > 0)
    xs = np.flatnonzero(rgba[..., 3].max(axis=0) > 0)
    if ys.size == 0:
        raise MagicBokehError(f"foreground {source.name!r} is fully transparent; remove it.")
    return np.ascontiguousarray(rgba[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1], dtype=np.float32)


def place_cutout(cutout: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 4) layer: ``cutout`` scaled to a random size and pasted at a random position.

    Resampling uses premultiplied colour so edges do not pick up the colour of transparent pixels.
    The centre stays inside the middle 70 % of the frame, so part of the cut-out is always visible.
    """
    h, w = cutout.shape[:2]
    scale = rng.uniform(*FOREGROUND_SCALE) * size / max(h, w)
    nh, nw = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
    premult = np.concatenate([cutout[..., :3] * cutout[..., 3:4], cutout[..., 3:4]], axis=2)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(premult, (nw, nh), interpolation=interp).reshape(nh, nw, 4)
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    x0, y0 = int(round(cx - nw / 2)), int(round(cy - nh / 2))
    layer = np.zeros((size, size, 4), np.float32)
    sx0, sy0 = max(-x0, 0), max(-y0, 0)
    dx0, dy0 = max(x0, 0), max(y0, 0)
    dx1, dy1 = min(x0 + nw, size), min(y0 + nh, size)
    layer[dy0:dy1, dx0:dx1] = small[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    alpha = np.clip(layer[..., 3:4], 0.0, 1.0)
    layer[..., :3] = np.where(alpha > 1e-6, layer[..., :3] / np.maximum(alpha, 1e-6), 0.0)
    layer[..., 3:4] = alpha
    return np.clip(layer, 0.0, 1.0)


def procedural_foreground(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 4) textured shape with a few bright points; colour outside the shape is kept
    (a complete layer), alpha marks the shape."""
    rgb = procedural_texture(rng, size)
    alpha = procedural_shape_alpha(rng, size)
    add_highlights(rgb, rng, rng.integers(0, 4), mask=alpha)
    return np.concatenate([rgb, alpha[..., None]], axis=2).astype(np.float32)


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) textured plane with scattered bright point highlights."""
    rgb = procedural_texture(rng, size)
    add_highlights(rgb, rng, rng.integers(3, 12))
    return rgb


# --------------------------------------------------------------------------------------------------
# Scene assembly

#: Alpha above which a layer counts as the visible surface in the disparity map.
VISIBLE_ALPHA = 0.5


@dataclass
class Scene:
    """A complete layered scene, far -> near, with disparities normalised so the visible map spans [0, 1].

    Attributes:
        layers: background (slanted, (H, W) disparity) then two foregrounds (scalar disparity).
        disparity: (H, W) float32 visible disparity (nearest layer with alpha > 0.5), min 0, max 1.
        sources: per layer, the file name relative to its folder, or "procedural".
    """

    layers: list[Layer]
    disparity: np.ndarray
    sources: list[str]


def visible_disparity(layers: Sequence[Layer], *, threshold: float = VISIBLE_ALPHA) -> np.ndarray:
    """(H, W) disparity of the nearest layer with alpha > ``threshold`` (the farthest layer elsewhere)."""
    h, w = layers[0].rgba.shape[:2]
    out = np.broadcast_to(np.asarray(layers[0].disparity), (h, w)).copy()
    for layer in layers[1:]:
        mask = layer.rgba[..., 3] > threshold
        out[mask] = np.broadcast_to(np.asarray(layer.disparity), (h, w))[mask]
    return out


def assemble_scene(
    rng: np.random.Generator,
    size: int,
    *,
    backgrounds: Sequence[tuple[str, Path]] | None = None,
    foregrounds: Sequence[ForegroundSource] | None = None,
    num_foregrounds: int = 2,
) -> Scene:
    """Draw one scene: a background plane and ``num_foregrounds`` nearer cut-outs.

    Sources come from the given lists (see :func:`list_backgrounds`, :func:`list_foregrounds`) or,
    where a list is None, are procedural. Raw disparities put every foreground in front of the
    whole background; then one affine map sends the visible map's minimum to 0 and maximum to 1
    exactly and is applied to every layer (hidden background parts may fall slightly outside [0, 1]).
    """
    # 1. Background: a photo crop or a texture, on a slanted plane.
    if backgrounds:
        name, path = backgrounds[int(rng.integers(len(backgrounds)))]
        bg_rgb = crop_background(load_photo(path).rgb, rng, size)
    else:
        name, bg_rgb = PROCEDURAL, procedural_background(rng, size)
    bg_rgba = np.concatenate([bg_rgb, np.ones((size, size, 1), np.float32)], axis=2)
    raw = [(bg_rgba, background_disparity(rng, size))]
    sources = [name]

    # 2. Foregrounds, each nearer than the last and than all of the background.
    near = float(raw[0][1].max()) + rng.uniform(0.05, 0.15)
    for _ in range(num_foregrounds):
        if foregrounds:
            src = foregrounds[int(rng.integers(len(foregrounds)))]
            rgba, fname = place_cutout(load_cutout(src), rng, size), src.name
        else:
            rgba, fname = procedural_foreground(rng, size), PROCEDURAL
        near += rng.uniform(0.05, 0.3)
        raw.append((rgba, float(near)))
        sources.append(fname)

    # 3. Normalise so the visible disparity spans exactly [0, 1]; float64 until the final cast.
    raw_layers = [Layer(rgba, d) for rgba, d in raw]
    vis = visible_disparity(raw_layers)
    lo, hi = float(vis.min()), float(vis.max())
    if hi - lo < 1e-9:
        raise MagicBokehError("internal: the scene has no depth range; this is a bug, please report it.")
    layers = []
    for rgba, d in raw:
        mapped = (np.asarray(d, np.float64) - lo) / (hi - lo)
        disp = mapped.astype(np.float32) if mapped.ndim else float(np.float32(mapped))
        layers.append(Layer(rgba.astype(np.float32), disp))
    disparity = visible_disparity(layers).astype(np.float32)
    return Scene(layers=layers, disparity=disparity, sources=sources)
