"""Full-page screenshot of a run report in headless Chromium (not run in CI).

    apt-get install -y chromium          # Debian's package
    python tools/screenshot_report.py RUN/result/report.html out.png [--width 1400] [--scale 0.5] [--colors 256]

Chromium's ``--screenshot`` captures the window, so the window is made taller than any report (``--height``) and
the blank space below the page is cropped. ``--scale`` and ``--colors`` shrink the PNG (e.g. for the README).
The page is opened from disk (``file://``), with the network off: what the screenshot shows is what a reader sees
without a server or a connection.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH: apt-get install -y chromium")


def screenshot(html: Path, out: Path, width: int, height: int, timeout: float = 120.0) -> None:
    """The window ``width``×``height`` of ``html`` as PNG ``out``."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--disable-extensions", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",  # no network
               f"--window-size={width},{height}", f"--screenshot={out}", html.resolve().as_uri()]
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    if not out.is_file():
        sys.exit(f"chromium wrote no screenshot ({' '.join(cmd)})")


def crop_blank_bottom(img: Image.Image, margin: int = 24) -> Image.Image:
    """Cut the rows below the last one that is not page background (the window is taller than the page)."""
    arr = np.asarray(img.convert("RGB"))
    background = arr[-1, -1]
    busy = np.nonzero((np.abs(arr.astype(np.int16) - background).sum(-1) > 12).any(axis=1))[0]
    bottom = int(busy[-1]) + margin if busy.size else arr.shape[0]
    return img.crop((0, 0, img.width, min(img.height, bottom)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("html", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=16000, help="window height: more than the page's")
    p.add_argument("--scale", type=float, default=1.0, help="resize the result by this factor")
    p.add_argument("--colors", type=int, default=0, help="quantise to this many colours (0: keep RGB)")
    a = p.parse_args(argv)
    if not a.html.is_file():
        sys.exit(f"no report at {a.html}")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        screenshot(a.html, raw, a.width, a.height)
        with Image.open(raw) as im:
            img = crop_blank_bottom(im)
            if img.height >= a.height - 30:
                print(f"warning: the page may be taller than --height {a.height}; raise it", file=sys.stderr)
    if a.scale != 1.0:
        img = img.resize((round(img.width * a.scale), round(img.height * a.scale)), Image.LANCZOS)
    if a.colors:
        img = img.convert("RGB").quantize(colors=a.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(a.out, optimize=True)
    print(f"{a.out}: {img.width}x{img.height}, {a.out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
