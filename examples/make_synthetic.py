"""Render the synthetic example scene and its exact disparity map.

    python examples/make_synthetic.py            # writes examples/synthetic_scene.png
                                                 #    and examples/synthetic_scene_disparity.png

A tiny numpy ray caster (no dependencies beyond numpy and Pillow): a checkered ground plane, three
spheres and a box at different distances, and a dark back wall dotted with small bright lights
that turn into bokeh discs when they are out of focus. Because the geometry is known, the
disparity map is exact: ``1 / z`` of the surface seen at each pixel centre, normalised to [0, 1]
with 1 = nearest, saved as a 16-bit PNG. The output is deterministic (fixed seed), so the
committed files can be rebuilt bit for bit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 960, 640
FOV_X_DEG = 58.0
CAMERA_HEIGHT = 1.0  # the ground plane is y = -CAMERA_HEIGHT
WALL_Z = 14.0
SUPERSAMPLE = 2
SEED = 7

# (centre x, centre y, centre z, radius, linear RGB albedo)
SPHERES = [
    (-0.95, -0.55, 3.2, 0.45, (0.80, 0.10, 0.08)),
    (0.55, -0.62, 5.6, 0.38, (0.10, 0.45, 0.16)),
    (1.9, -0.35, 9.5, 0.65, (0.85, 0.62, 0.10)),
]
# axis-aligned box: (min corner, max corner, albedo)
BOXES = [((-2.6, -1.0, 7.0), (-1.6, 0.1, 8.0), (0.20, 0.28, 0.60))]
SUN_DIR = np.array([-0.45, 0.8, -0.4])
SUN_DIR = SUN_DIR / np.linalg.norm(SUN_DIR)


def _camera_rays(width: int, height: int, samples: int) -> np.ndarray:
    """(H*s, W*s, 3) unit ray directions through sub-pixel centres (y up, +z forward)."""
    focal = 0.5 * width / np.tan(np.radians(FOV_X_DEG) / 2)
    xs = (np.arange(width * samples) + 0.5) / samples - width / 2
    ys = height / 2 - (np.arange(height * samples) + 0.5) / samples
    u, v = np.meshgrid(xs, ys)
    d = np.stack([u, v, np.full_like(u, focal)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _hit_sphere(o: np.ndarray, d: np.ndarray, c, r: float) -> np.ndarray:
    """Distance along unit rays ``d`` from origins ``o`` to a sphere (inf where missed)."""
    oc = o - np.asarray(c)
    b = np.sum(oc * d, axis=-1)
    disc = b * b - (np.sum(oc * oc, axis=-1) - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc > 0) & (t > 1e-4), t, np.inf)


def _hit_box(o: np.ndarray, d: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: distance to an axis-aligned box and the outward normal at the hit."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (np.asarray(lo) - o) * inv
        t2 = (np.asarray(hi) - o) * inv
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    t_near = np.max(tmin, axis=-1)
    t_far = np.min(tmax, axis=-1)
    hit = (t_near <= t_far) & (t_near > 1e-4)
    axis = np.argmax(tmin, axis=-1)
    normal = np.zeros_like(d)
    idx = np.indices(axis.shape)
    normal[idx[0], idx[1], axis] = -np.sign(np.take_along_axis(d, axis[..., None], -1)[..., 0])
    return np.where(hit, t_near, np.inf), normal


def _occluded(points: np.ndarray) -> np.ndarray:
    """True where the sun is blocked by a sphere or the box (hard shadows)."""
    d = np.broadcast_to(SUN_DIR, points.shape)
    blocked = np.zeros(points.shape[:-1], bool)
    for cx, cy, cz, r, _ in SPHERES:
        blocked |= np.isfinite(_hit_sphere(points, d, (cx, cy, cz), r))
    for lo, hi, _ in BOXES:
        blocked |= np.isfinite(_hit_box(points, d, lo, hi)[0])
    return blocked


def _trace(d: np.ndarray, rng_lights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear RGB radiance and the z (depth along the optical axis) of the first hit per ray."""
    o = np.zeros_like(d)
    shape = d.shape[:-1]
    # Candidate surfaces: 0 = wall, 1 = ground, 2.. = spheres, then boxes.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_wall = np.where(d[..., 2] > 0, WALL_Z / d[..., 2], np.inf)
        t_ground = np.where(d[..., 1] < 0, -CAMERA_HEIGHT / d[..., 1], np.inf)
    ts = [t_wall, t_ground] + [_hit_sphere(o, d, s[:3], s[3]) for s in SPHERES]
    box_normals = []
    for lo, hi, _ in BOXES:
        t, n = _hit_box(o, d, lo, hi)
        ts.append(t)
        box_normals.append(n)
    t_all = np.stack(ts, axis=0)
    which = np.argmin(t_all, axis=0)
    t = np.min(t_all, axis=0)
    p = o + d * t[..., None]

    colour = np.zeros(shape + (3,))
    normal = np.zeros(shape + (3,))
    albedo = np.zeros(shape + (3,))
    emissive = np.zeros(shape + (3,))

    # Back wall: dark dusk gradient, faint brick texture, and small warm and cool lights.
    m = which == 0
    wy = p[..., 1]
    base = np.stack([0.020 + 0.010 * wy, 0.025 + 0.012 * wy, 0.060 + 0.02 * wy], -1).clip(0.005, 1)
    brick = (np.floor(p[..., 0] * 2.0 + 0.5 * (np.floor(wy * 4.0) % 2)) + np.floor(wy * 4.0)) % 2
    albedo[m] = (base * (0.9 + 0.1 * brick[..., None]))[m]
    normal[m] = (0.0, 0.0, -1.0)
    for lx, ly, radius, r, g, b in rng_lights:
        inside = m & ((p[..., 0] - lx) ** 2 + (p[..., 1] - ly) ** 2 < radius**2)
        emissive[inside] = (r, g, b)

    # Ground: checkerboard of warm tiles with grout lines and a subtle per-tile variation.
    m = which == 1
    gx, gz = p[..., 0] * 2.0, p[..., 2] * 2.0
    check = (np.floor(gx) + np.floor(gz)) % 2
    grout = (np.abs(gx - np.round(gx)) < 0.03) | (np.abs(gz - np.round(gz)) < 0.03)
    tile = np.where(check[..., None] > 0, (0.55, 0.42, 0.30), (0.16, 0.12, 0.10))
    tile = np.where(grout[..., None], (0.05, 0.05, 0.05), tile)
    albedo[m] = tile[m]
    normal[m] = (0.0, 1.0, 0.0)

    for i, (cx, cy, cz, r, alb) in enumerate(SPHERES):
        m = which == 2 + i
        normal[m] = (p[m] - np.array([cx, cy, cz])) / r
        stripes = 0.85 + 0.15 * np.sin(18.0 * normal[m][:, 1:2])
        albedo[m] = np.array(alb) * stripes
    for j, (_, _, alb) in enumerate(BOXES):
        m = which == 2 + len(SPHERES) + j
        normal[m] = box_normals[j][m]
        albedo[m] = alb

    lit = ~_occluded(p + normal * 1e-3)
    lambert = np.clip(np.sum(normal * SUN_DIR, axis=-1), 0.0, None) * lit
    # Blinn-Phong highlight on the spheres only.
    half = SUN_DIR - d
    half = half / np.linalg.norm(half, axis=-1, keepdims=True)
    spec = np.clip(np.sum(normal * half, axis=-1), 0, None) ** 60 * lit
    is_sphere = (which >= 2) & (which < 2 + len(SPHERES))
    sky = 0.25 + 0.15 * normal[..., 1:2]
    colour = albedo * (1.1 * lambert[..., None] + sky) + 0.6 * (spec * is_sphere)[..., None]
    # The wall is in the evening shade: no sun on it, only the sky term and the lights.
    colour[which == 0] = albedo[which == 0] * 1.5
    colour += emissive
    # Distance haze towards the wall colour.
    haze = 1.0 - np.exp(-t / 40.0)
    colour = colour * (1 - haze[..., None]) + np.array([0.03, 0.035, 0.07]) * haze[..., None]
    z = p[..., 2]
    return colour, z


def _lights(rng: np.random.Generator, n: int = 34) -> np.ndarray:
    """Small emissive discs on the wall, clustered above the horizon (x, y, radius, r, g, b)."""
    xs = rng.uniform(-8.5, 8.5, n)
    ys = rng.uniform(-0.2, 4.0, n)
    radius = rng.uniform(0.09, 0.15, n)
    warm = rng.random(n) < 0.7
    rgb = np.where(warm[:, None], [2.4, 1.5, 0.5], [0.7, 1.3, 2.4]) * rng.uniform(0.9, 1.4, (n, 1))
    return np.column_stack([xs, ys, radius, rgb])


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def render_scene(width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """The scene as (H, W, 3) uint8 sRGB and its exact disparity, (H, W) float64 in [0, 1]."""
    lights = _lights(np.random.default_rng(SEED))
    s = SUPERSAMPLE
    colour, _ = _trace(_camera_rays(width, height, s), lights)
    # Box-filter the supersamples in linear light, then encode as sRGB.
    colour = colour.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    rgb = (_to_srgb(colour) * 255.0 + 0.5).astype(np.uint8)
    # Exact inverse depth at the pixel centres (one ray per pixel).
    _, z = _trace(_camera_rays(width, height, 1), lights)
    inv = 1.0 / z
    disparity = (inv - inv.min()) / (inv.max() - inv.min())
    return rgb, disparity


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=here / "synthetic_scene.png", help="image path")
    args = parser.parse_args()
    rgb, disparity = render_scene()
    Image.fromarray(rgb).save(args.out, optimize=True)
    disp_path = args.out.with_name(args.out.stem + "_disparity.png")
    Image.fromarray((disparity * 65535.0 + 0.5).astype(np.uint16)).save(disp_path)
    print(f"wrote {args.out} and {disp_path} ({rgb.shape[1]}x{rgb.shape[0]})")


if __name__ == "__main__":
    main()
