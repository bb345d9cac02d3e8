"""Depth evaluation datasets: NYUv2 (labelled .mat), KITTI Eigen test split, or a generic folder.

A data spec names one dataset:

* ``nyu:PATH`` — ``PATH/nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py) and
  ``PATH/splits.mat`` (``testNdxs``, 1-based; read with scipy) → the 654 test frames, 480 × 640.
  h5py stores MATLAB arrays transposed: ``images`` is (N, 3, W, H) uint8 and ``depths`` (N, W, H)
  float32 metres, so a frame is ``images[i].transpose(2, 1, 0)`` and its depth ``depths[i].T``.
  Sample names are the 1-based labelled-set index with four digits (``0001``).
* ``kitti:PATH`` — KITTI raw images ``PATH/DATE/DATE_drive_XXXX_sync/image_02/data/FRAME.png`` and
  annotated depth ``DRIVE/proj_depth/groundtruth/image_02/FRAME.png`` (16-bit PNG, metres = value /
  256, 0 = invalid) under ``PATH/data_depth_annotated/{train,val}``, ``PATH/data_depth_annotated``,
  ``PATH/{train,val}`` or ``PATH``; the split list ``PATH/eigen_test_files.txt`` (or
  ``split_file``). Names are ``DRIVE_image_0X_FRAME``.
* ``real`` — real photos with measured depth that installed packages ship (no download, no files
  in the repository; :mod:`magicbokeh.eval.depth_real`). A folder named ``real`` is ``./real``.
* ``DIR`` — ``DIR/rgb/NAME.{png,jpg,jpeg}`` with ``DIR/depth/NAME.{npy,png}``: ``.npy`` in metres,
  16-bit PNG in millimetres; 0 / non-finite = invalid.

Listing (:func:`open_dataset`) is cheap and happens once; :func:`load_sample` reads one frame and
is what the (possibly remote) workers call.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MagicBokehError
from .depth_metrics import DepthProtocol

logger = logging.getLogger(__name__)

NYU_MIN_DEPTH, NYU_MAX_DEPTH = 1e-3, 10.0
KITTI_MIN_DEPTH, KITTI_MAX_DEPTH = 1e-3, 80.0
FOLDER_MIN_DEPTH, FOLDER_MAX_DEPTH = 1e-3, 80.0
NYU_MAT, NYU_SPLITS = "nyu_depth_v2_labeled.mat", "splits.mat"
KITTI_SPLIT = "eigen_test_files.txt"
KITTI_DEPTH_SCALE = 256.0  # 16-bit PNG value / 256 = metres
FOLDER_PNG_SCALE = 1000.0  # 16-bit PNG value / 1000 = metres
RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIXES = (".npy", ".png")

#: Skip reasons (the keys of the counts under each table).
SKIP_MISSING = "missing or mismatched file"
SKIP_NO_GT = "no valid ground truth"
SKIP_NO_ANNOTATION = "no annotated ground truth"


@dataclass(frozen=True)
class Sample:
    """One frame: ``index`` is its position in the dataset's ordered list (degradation seed offset).

    ``rgb`` and ``depth`` are paths (empty for NYUv2, which reads row ``row`` of the .mat).
    """

    index: int
    name: str
    rgb: str = ""
    depth: str = ""
    row: int = -1


@dataclass(frozen=True)
class DatasetInfo:
    """What a worker needs to read a sample: kind (``nyu``, ``kitti``, ``real``, ``folder``), root, protocol."""

    name: str
    kind: str
    root: str
    protocol: DepthProtocol


@dataclass
class Dataset:
    """A listed dataset: the samples to score and the entries skipped while listing.

    ``skipped`` holds ``(position, name, reason)`` with the entry's position in the ordered list.
    """

    info: DatasetInfo
    samples: list[Sample]
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def skip(self, position: int, name: str, reason: str) -> None:
        """Record an entry that cannot be scored."""
        self.skipped.append((position, name, reason))

    def limit(self, n: int | None) -> "Dataset":
        """The first ``n`` entries of the ordered list (samples and listing skips alike)."""
        if n is None:
            return self
        if n < 1:
            raise MagicBokehError(f"--limit must be at least 1; got {n}.")
        return Dataset(
            self.info, [s for s in self.samples if s.index < n], [e for e in self.skipped if e[0] < n]
        )


def open_dataset(
    spec: str,
    *,
    split_file: str | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
) -> Dataset:
    """List a dataset from its spec (``nyu:PATH``, ``kitti:PATH``, ``real`` or a folder); reads no pixels.

    ``min_depth``/``max_depth`` (metres) apply to the generic folder (defaults 1e-3 and 80); NYUv2
    and KITTI always use their standard ranges (1e-3–10 m, 1e-3–80 m).
    """
    if spec.strip().lower() == "real":
        return _open_real()
    kind, _, rest = spec.partition(":")
    if kind.lower() == "nyu" and rest:
        return _open_nyu(Path(rest).expanduser())
    if kind.lower() == "kitti" and rest:
        return _open_kitti(Path(rest).expanduser(), split_file)
    return _open_folder(Path(spec).expanduser(), min_depth, max_depth)


# ---------------------------------------------------------------------------------------- NYUv2


def _open_nyu(root: Path) -> Dataset:
    mat, splits = root / NYU_MAT, root / NYU_SPLITS
    missing = [str(p) for p in (mat, splits) if not p.is_file()]
    if missing:
        raise MagicBokehError(
            f"nyu:{root} needs {NYU_MAT} (labelled NYUv2, MATLAB v7.3) and {NYU_SPLITS} (testNdxs) in that "
            f"folder; missing: {', '.join(missing)}."
        )
    try:
        from scipy.io import loadmat
    except ImportError:
        raise MagicBokehError("reading NYUv2 splits.mat needs SciPy: pip install scipy") from None
    try:
        test = np.asarray(loadmat(str(splits))["testNdxs"]).ravel().astype(int)
    except (KeyError, ValueError, OSError, NotImplementedError) as exc:
        raise MagicBokehError(f"cannot read testNdxs from {splits}: {exc}") from None
    with _open_h5(mat) as f:
        n = _nyu_arrays(f, mat)
    bad = test[(test < 1) | (test > n)]
    if bad.size:
        raise MagicBokehError(f"{splits} lists indices outside 1..{n} (e.g. {int(bad[0])}); is it the NYUv2 split?")
    info = DatasetInfo("nyuv2", "nyu", str(root), DepthProtocol(NYU_MIN_DEPTH, NYU_MAX_DEPTH, "nyu_eigen"))
    samples = [Sample(i, f"{k:04d}", row=int(k) - 1) for i, k in enumerate(test)]
    return Dataset(info, samples)


def _open_h5(path: Path) -> Any:
    try:
        import h5py
    except ImportError:
        raise MagicBokehError(
            f"reading {path.name} (MATLAB v7.3 = HDF5) needs h5py: pip install h5py"
        ) from None
    try:
        return h5py.File(str(path), "r")
    except OSError as exc:
        raise MagicBokehError(f"cannot open {path} as HDF5 (MATLAB v7.3): {exc}") from None


def _nyu_arrays(f: Any, mat: Path) -> int:
    """Check the labelled set's layout, return the number of frames."""
    if "images" not in f or "depths" not in f:
        raise MagicBokehError(f"{mat} has no 'images'/'depths' arrays; is it nyu_depth_v2_labeled.mat?")
    images, depths = f["images"], f["depths"]
    if images.ndim != 4 or images.shape[1] != 3 or depths.ndim != 3 or depths.shape[0] != images.shape[0]:
        raise MagicBokehError(
            f"{mat}: expected images (N, 3, W, H) and depths (N, W, H) as h5py reads MATLAB v7.3; "
            f"got {images.shape} and {depths.shape}."
        )
    if images.shape[2:] != depths.shape[1:]:
        raise MagicBokehError(f"{mat}: image frames {images.shape[2:]} and depth frames {depths.shape[1:]} differ.")
    return int(images.shape[0])


_H5_CACHE: dict[str, Any] = {}


def _nyu_frame(root: str, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``row`` (0-based) of the labelled set: RGB (H, W, 3) uint8 and depth (H, W) metres."""
    path = Path(root) / NYU_MAT
    f = _H5_CACHE.get(str(path))
    if f is None:  # one open handle per process (h5py handles cannot travel to workers)
        f = _H5_CACHE[str(path)] = _open_h5(path)
    rgb = np.asarray(f["images"][row]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
    depth = np.asarray(f["depths"][row], np.float32).T  # (W, H) -> (H, W)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth)


# ---------------------------------------------------------------------------------------- KITTI

_KITTI_IMAGE = re.compile(
    r"(?P<date>\d{4}_\d{2}_\d{2})/(?P<drive>\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)/(?P<cam>image_0[23])/data/"
    r"(?P<frame>\d+)\.(?:png|jpg)$"
)


def _parse_kitti_line(line: str) -> tuple[str, str, str, str, str | None] | None:
    """(date, drive, camera, frame, gt_path or None) from one split-list line, or None if unparseable.

    Accepted lines (whitespace-separated, extra columns ignored):
    ``DATE/DRIVE/image_02/data/FRAME.png [GT_PATH|None] [focal]`` (BTS/AdaBins ``eigen_test_files``)
    or ``DATE/DRIVE FRAME l|r`` (Monodepth2 ``test_files.txt``; l = image_02, r = image_03).
    """
    parts = line.split()
    if not parts:
        return None
    m = _KITTI_IMAGE.search(parts[0].replace("\\", "/"))
    if m:
        gt = parts[1] if len(parts) > 1 and parts[1].lower() not in ("none", "nan") else None
        if gt is not None and not gt.lower().endswith(".png"):
            gt = None
        return m["date"], m["drive"], m["cam"], m["frame"].zfill(10), gt
    m2 = re.fullmatch(r"(\d{4}_\d{2}_\d{2})/(\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)", parts[0].strip("/"))
    if m2 and len(parts) >= 2 and parts[1].isdigit():
        cam = "image_03" if len(parts) > 2 and parts[2].lower() == "r" else "image_02"
        return m2.group(1), m2.group(2), cam, parts[1].zfill(10), None
    return None


def _open_kitti(root: Path, split_file: str | None) -> Dataset:
    if not root.is_dir():
        raise MagicBokehError(f"kitti:{root} is not a folder; point it at the KITTI raw data root.")
    split = Path(split_file).expanduser() if split_file else root / KITTI_SPLIT
    if not split.is_file():
        raise MagicBokehError(
            f"KITTI needs the Eigen test split list: {split} not found (pass --split-file FILE; one line per "
            "frame, 'DATE/DRIVE/image_02/data/FRAME.png [GT_PATH]' or 'DATE/DRIVE FRAME l')."
        )
    gt_roots = [root / "data_depth_annotated" / "train", root / "data_depth_annotated" / "val",
                root / "data_depth_annotated", root / "train", root / "val", root]
    info = DatasetInfo("kitti", "kitti", str(root), DepthProtocol(KITTI_MIN_DEPTH, KITTI_MAX_DEPTH, "kitti_garg"))
    ds = Dataset(info, [])
    lines = [ln for ln in split.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise MagicBokehError(f"the KITTI split list {split} is empty.")
    unparsed = 0
    for pos, line in enumerate(lines):
        parsed = _parse_kitti_line(line)
        if parsed is None:
            unparsed += 1
            ds.skip(pos, line.strip()[:80], SKIP_MISSING)
            continue
        date, drive, cam, frame, gt_rel = parsed
        name = f"{drive}_{cam}_{frame}"
        rgb = root / date / drive / cam / "data" / f"{frame}.png"
        if not rgb.is_file() and rgb.with_suffix(".jpg").is_file():
            rgb = rgb.with_suffix(".jpg")
        rel = gt_rel or f"{drive}/proj_depth/groundtruth/{cam}/{frame}.png"
        gt = next((r / rel for r in gt_roots if (r / rel).is_file()), None)
        if not rgb.is_file():
            logger.warning("KITTI %s: image %s not found; skipped", name, rgb)
            ds.skip(pos, name, SKIP_MISSING)
        elif gt is None:
            ds.skip(pos, name, SKIP_NO_ANNOTATION)
        else:
            ds.samples.append(Sample(pos, name, rgb=str(rgb), depth=str(gt)))
    if unparsed == len(lines):
        raise MagicBokehError(
            f"no line of {split} is a KITTI frame; expected 'DATE/DRIVE/image_02/data/FRAME.png [GT_PATH]' "
            "or 'DATE/DRIVE FRAME l'."
        )
    if not ds.samples:
        raise MagicBokehError(
            f"none of the {len(lines)} frames in {split} has both its image under {root}/DATE/DRIVE/image_0X/data/ "
            "and annotated depth DRIVE/proj_depth/groundtruth/image_0X/FRAME.png under "
            f"{root}/data_depth_annotated/{{train,val}}."
        )
    return ds


# ----------------------------------------------------------------------------------------- real


def _open_real() -> Dataset:
    from .depth_real import REAL_FRAMES, REAL_MAX_DEPTH, REAL_MIN_DEPTH, installed

    ds = Dataset(DatasetInfo("real", "real", "", DepthProtocol(REAL_MIN_DEPTH, REAL_MAX_DEPTH, "none")), [])
    for pos, frame in enumerate(REAL_FRAMES):
        if installed(frame):
            ds.samples.append(Sample(pos, frame.name))
        else:
            logger.warning("real: %s ships with %s, which is not installed; skipped", frame.name, frame.package)
            ds.skip(pos, frame.name, SKIP_MISSING)
    if not ds.samples:
        packages = sorted({f.package for f in REAL_FRAMES})
        raise MagicBokehError(
            "the real dataset reads photos with measured depth from installed packages, and none is "
            f"installed: pip install {' '.join('scikit-image' if p == 'skimage' else p for p in packages)}"
        )
    return ds


# --------------------------------------------------------------------------------------- folder


def _open_folder(root: Path, min_depth: float | None, max_depth: float | None) -> Dataset:
    rgb_dir, depth_dir = root / "rgb", root / "depth"
    if not rgb_dir.is_dir() or not depth_dir.is_dir():
        raise MagicBokehError(
            f"{root} is not a depth dataset: expected {rgb_dir}/NAME.png|jpg and {depth_dir}/NAME.npy|png "
            "(or use nyu:PATH / kitti:PATH)."
        )
    protocol = DepthProtocol(
        FOLDER_MIN_DEPTH if min_depth is None else min_depth,
        FOLDER_MAX_DEPTH if max_depth is None else max_depth,
        "none",
    )
    rgbs = _by_stem(rgb_dir, RGB_SUFFIXES)
    depths = _by_stem(depth_dir, DEPTH_SUFFIXES)
    if not set(rgbs) & set(depths):
        raise MagicBokehError(
            f"no matching files in {root}: need rgb/NAME.png|jpg with depth/NAME.npy|png of the same NAME "
            f"(found {len(rgbs)} images, {len(depths)} depth maps)."
        )
    ds = Dataset(DatasetInfo(root.resolve().name, "folder", str(root), protocol), [])
    for pos, name in enumerate(sorted(set(rgbs) | set(depths))):
        if name not in depths:
            logger.warning("%s: rgb/%s has no depth/%s.npy|png; skipped", root.name, rgbs[name].name, name)
            ds.skip(pos, name, SKIP_MISSING)
        elif name not in rgbs:
            logger.warning("%s: depth/%s has no rgb/%s.png|jpg; skipped", root.name, depths[name].name, name)
            ds.skip(pos, name, SKIP_MISSING)
        else:
            ds.samples.append(Sample(pos, name, rgb=str(rgbs[name]), depth=str(depths[name])))
    return ds


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes:
            if p.stem in out:
                logger.warning("%s: both %s and %s; using %s", folder, out[p.stem].name, p.name, out[p.stem].name)
                continue
            out[p.stem] = p
    return out


# -------------------------------------------------------------------------------------- reading


def read_rgb(path: str | Path) -> np.ndarray:
    """An RGB file as (H, W, 3) float32 in [0, 1], pixel-aligned with its depth (EXIF ignored)."""
    import cv2

    from ..images import to_rgb_float

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None:
        raise MagicBokehError(f"cannot read image {path}.")
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] == 4 else arr[..., ::-1]
    return to_rgb_float(arr)


def read_depth(path: str | Path, *, png_scale: float) -> np.ndarray:
    """Ground-truth depth in metres, (H, W) float32: ``.npy`` as stored, a 16-bit PNG divided by
    ``png_scale`` (1000 for millimetres, 256 for KITTI); 0 and non-finite values mean invalid."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise MagicBokehError(f"cannot read depth {path}: {exc}") from None
        arr = np.squeeze(arr)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise MagicBokehError(f"depth {path} must be a 2-D numeric array; got {arr.shape} {arr.dtype}.")
        return arr.astype(np.float32)
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2 or arr.dtype != np.uint16:
        raise MagicBokehError(
            f"depth {path} must be a single-channel 16-bit PNG; got "
            f"{'an unreadable file' if arr is None else f'{arr.dtype} {arr.shape}'}."
        )
    return arr.astype(np.float32) / np.float32(png_scale)


def load_sample(info: DatasetInfo, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Read one frame: RGB (H, W, 3) float32 in [0, 1] and ground-truth depth (H, W) float32 metres
    (0 / non-finite = invalid). Raises MagicBokehError for unreadable or mismatched files."""
    from ..images import to_rgb_float

    if info.kind == "nyu":
        rgb_u8, depth = _nyu_frame(info.root, sample.row)
        rgb = to_rgb_float(rgb_u8)
    elif info.kind == "real":
        from .depth_real import read_real

        rgb_u8, depth = read_real(sample.name)
        rgb = to_rgb_float(rgb_u8)
    else:
        rgb = read_rgb(sample.rgb)
        scale = KITTI_DEPTH_SCALE if info.kind == "kitti" else FOLDER_PNG_SCALE
        depth = read_depth(sample.depth, png_scale=scale)
    if rgb.shape[:2] != depth.shape:
        raise MagicBokehError(
            f"{sample.name}: image is {rgb.shape[1]}x{rgb.shape[0]} but its depth is {depth.shape[1]}x{depth.shape[0]}."
        )
    return rgb, depth
