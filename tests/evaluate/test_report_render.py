"""report.html renders in headless Chromium, from disk, with no server.

Needs a Chromium binary (Debian: ``apt-get install -y chromium``); skipped with that hint when
none is found. Set ``CELLSEG_SCREENSHOT`` to a path to keep a copy of the screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tests.conftest import make_cfg
from tests.demo_eval import evaluate_demo

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium found (install it: apt-get install -y chromium, or set CHROMIUM)")


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path, demo_root):
    binary = find_chromium()
    cfg = make_cfg(tmp_path, **{"data.source": str(demo_root)})
    report = Path(evaluate_demo(cfg, tmp_path / "run").result.report_html)
    url = report.resolve().as_uri()

    dom = chromium(binary, tmp_path / "profile", "--dump-dom", url).stdout
    assert '<table id="summary">' in dom and '<table id="overlays">' in dom
    assert dom.count("<img ") >= 3 and "data:image/png;base64," in dom
    assert "watershed" in dom and "cellseg evaluation report" in dom

    shot = tmp_path / "report.png"
    chromium(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", url)
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05  # not a blank page
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50  # text, tables and figures
    if os.environ.get("CELLSEG_SCREENSHOT"):
        shutil.copy(shot, os.environ["CELLSEG_SCREENSHOT"])
