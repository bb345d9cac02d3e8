"""Render every example of the app through the CLI at two commits and compare the files byte for byte.

    python bench/compare_examples.py --old 8177189 --new HEAD [--pin-renderer 8177189] [--sweeps] [--app]

Each commit is checked out into a temporary ``git worktree`` (the working tree is never touched)
and run with this interpreter (``python -m magicbokeh``, offline: ``HF_HUB_OFFLINE=1``). Every
example of ``app.py``'s ``EXAMPLES`` (read from the new commit with ``ast``, skipped where a file is
missing on either side) is rendered with its focus point, K, disparity map and highlight boost
(classical backend, as the app's examples), writing the result, the disparity map used and the
defocus map. With ``--sweeps`` each example also gets a 4-frame aperture sweep (frames as PNGs).
With ``--app`` each example is also rendered by the app's own example handler, in process, and its
(before, after) images and disparity view are saved as PNGs (needs gradio).

``--pin-renderer COMMIT`` puts the classical renderer's files (:data:`RENDERER_FILES`) of COMMIT
into both worktrees, so a deliberate change of the renderer's pixels between the two commits does
not hide (or cause) a difference elsewhere: the comparison then covers everything else — request
path, depth, focus, image decoding, processing size, notes.

Prints one line per file and a summary; exits 1 when any file differs.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The classical renderer: what --pin-renderer copies (a file missing at COMMIT is left as it is).
RENDERER_FILES = ("magicbokeh/lens_blur.py", "magicbokeh/lens_blur_fill.py", "magicbokeh/classical.py",
                  "magicbokeh/apertures.py", "magicbokeh/colour.py")


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def examples(app_source: str) -> list[tuple]:
    """The ``EXAMPLES`` list literal of an app.py (file, x, y, K, disparity or None, boost, label)."""
    for node in ast.parse(app_source).body:
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(node, ast.Assign) and "EXAMPLES" in targets:
            return [tuple(row) for row in ast.literal_eval(node.value)]
    raise SystemExit("no EXAMPLES list in app.py")


def render_all(tree: Path, rows: list[tuple], out: Path, sweeps: bool) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree), "MAGICBOKEH_CACHE_DIR": str(out / ".cache")}
    ex = tree / "examples"
    for name, x, y, k, disparity, boost, _label in rows:
        stem = f"{Path(name).stem}_{x}_{y}_K{k}"
        common = [str(ex / name), "--focus", f"{x},{y}", "--K", str(k), "--backend", "classical", "-q"]
        if disparity:
            common += ["--depth", str(ex / disparity)]
        if boost:
            common += ["--highlight-boost"]
        cmd = [sys.executable, "-m", "magicbokeh", "render", *common, "-o", str(out / f"{stem}.png"),
               "--save-depth", str(out / f"{stem}_disparity.png"), "--save-defocus", str(out / f"{stem}_defocus.png")]
        subprocess.run(cmd, cwd=tree, env=env, check=True)
        if sweeps:
            common.remove("--K"), common.remove(str(k))
            subprocess.run([sys.executable, "-m", "magicbokeh", "sweep", *common, "--frames", "4", "--k-max", str(k),
                            "-o", str(out / f"{stem}_sweep")], cwd=tree, env=env, check=True)


#: Runs in a worktree: the app's example handler (module function before the renovation, a method of
#: ``app.handlers`` after) on every example, its images saved as PNGs.
APP_SNIPPET = """
import sys, numpy as np
from pathlib import Path
from PIL import Image
import app
out = Path(sys.argv[1])
handler = getattr(getattr(app, "handlers", None), "render_example", None) or app.render_example
for name, x, y, k, disparity, boost, _ in eval(sys.argv[2]):
    disp = str(app.EXAMPLES_DIR / disparity) if disparity else None
    (before, after), _, view, *_ = handler(Image.open(app.EXAMPLES_DIR / name), x, y, k, disp, boost)
    stem = f"{Path(name).stem}_{x}_{y}_K{k}_app"
    for tag, arr in (("before", before), ("after", after), ("view", view)):
        arr = np.asarray(Image.open(arr).convert("RGB")) if isinstance(arr, str) else arr  # files since the app fix
        Image.fromarray(np.asarray(arr)).save(out / f"{stem}_{tag}.png")
"""


def render_app(tree: Path, rows: list[tuple], out: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_EXAMPLES_CACHE": str(out / ".cache" / "examples"), "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", APP_SNIPPET, str(out), repr(rows)], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default="8177189", help="commit before (default 8177189)")
    p.add_argument("--new", default="HEAD", help="commit after (default HEAD)")
    p.add_argument("--pin-renderer", metavar="COMMIT", help="use this commit's classical renderer on both sides")
    p.add_argument("--sweeps", action="store_true", help="also compare a 4-frame aperture sweep per example")
    p.add_argument("--app", action="store_true", help="also render through the app's example handler")
    p.add_argument("--keep", metavar="DIR", help="keep the rendered files here")
    args = p.parse_args(argv)

    old, new = (git("rev-parse", "--short", c).strip() for c in (args.old, args.new))
    work = Path(tempfile.mkdtemp(prefix="magicbokeh-compare-"))
    trees = {"old": work / f"wt-{old}", "new": work / f"wt-{new}"}
    outs = {side: Path(args.keep or work) / f"out-{side}" for side in trees}
    rows_all = examples(git("show", f"{new}:app.py"))
    try:
        for side, commit in (("old", old), ("new", new)):
            git("worktree", "add", "--detach", str(trees[side]), commit)
            if args.pin_renderer:
                for rel in RENDERER_FILES:
                    try:
                        (trees[side] / rel).write_text(git("show", f"{args.pin_renderer}:{rel}"))
                    except subprocess.CalledProcessError:
                        pass  # not in that commit: the side keeps its own (unused by the pinned renderer)
        rows = [r for r in rows_all
                if all((t / "examples" / r[0]).is_file() and (not r[4] or (t / "examples" / r[4]).is_file())
                       for t in trees.values())]
        skipped = [r[0] for r in rows_all if r not in rows]
        for side in trees:
            outs[side].mkdir(parents=True, exist_ok=True)
            render_all(trees[side], rows, outs[side], args.sweeps)
            if args.app:
                render_app(trees[side], rows, outs[side])
        names = sorted({p.relative_to(outs[s]) for s in outs for p in outs[s].rglob("*.png")
                        if ".cache" not in p.parts})
        differ = 0
        for name in names:
            a, b = outs["old"] / name, outs["new"] / name
            same = a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()
            differ += not same
            print(f"{'same  ' if same else 'DIFFER'} {name} {digest(a) if a.is_file() else '-'} "
                  f"{digest(b) if b.is_file() else '-'}")
        pinned = f", classical renderer of {args.pin_renderer} on both sides" if args.pin_renderer else ""
        print(f"\n{old} vs {new}{pinned}: {len(rows)} examples, {len(names)} files, {differ} differ"
              + (f"; skipped (missing on one side): {', '.join(skipped)}" if skipped else ""))
        return 1 if differ else 0
    finally:
        for tree in trees.values():
            if tree.exists():
                git("worktree", "remove", "--force", str(tree))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
