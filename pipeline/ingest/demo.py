"""Built-in demo dataset: synthetic fields in the exact BBBC020 on-disk layout.

Layout written under `root` (as the Broad publishes it, including the ``BBC020`` spelling)::

    BBBC020_v1_images/<field>/<field>_c1.TIF        8-bit RGB, CD11b (cells), R = G, B = 0
    BBBC020_v1_images/<field>/<field>_c5.TIF        8-bit RGB, DAPI (nuclei), B only
    BBBC020_v1_images/<field>/<field>_(c1+c5).TIF   8-bit RGB merge
    BBC020_v1_outlines_cells/<field>_c1_<n>.TIF     uint8 0/255, one filled mask per cell
    BBC020_v1_outlines_nuclei/<field>_c5_<n>.TIF    uint8 0/255, one filled mask per nucleus

Like the real data: irregular cells that touch and overlap, one nucleus inside each, uneven
illumination, shot noise and blur, objects cut by the border (which, as in BBBC020, are not
annotated), and the 30min fields without any ground truth. Deterministic for a given seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from pipeline.atomic import atomic_path
from pipeline.io import write_tif

log = logging.getLogger(__name__)

# Condition / time-point prefixes of the real field names, e.g. "jw-1h 3", "jw-Kontrolle2".
CONDITIONS = ("Kontrolle", "15min", "30min", "1h", "2h", "24h")
UNLABELLED_CONDITIONS = ("30min",)  # BBBC020 has no ground truth for the 30min series


@dataclass(frozen=True)
class DemoSpec:
    n_fields: int = 12
    height: int = 256
    width: int = 320
    seed: int = 0


def field_names(n_fields: int) -> list[str]:
    """Real-style field names cycling through the conditions: jw-Kontrolle1, jw-15min 1, ..."""
    names = []
    for i in range(n_fields):
        cond, rep = CONDITIONS[i % len(CONDITIONS)], i // len(CONDITIONS) + 1
        names.append(f"jw-{cond}{rep}" if cond == "Kontrolle" else f"jw-{cond} {rep}")
    return names


def _blob(
    shape: tuple[int, int], cy: float, cx: float, radius: float, rng, lobes: int
) -> np.ndarray:
    """Irregular star-convex blob: r(theta) = R (1 + sum_k a_k cos(k theta + phi_k))."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.ones_like(theta)
    for k in range(2, 2 + lobes):
        r += rng.uniform(0.03, 0.14) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(yy - cy, xx - cx) <= radius * r


def synth_field(spec: DemoSpec, index: int) -> tuple[np.ndarray, np.ndarray, list, list]:
    """One field: (c1, c5) float images in [0, 1] and per-object cell and nucleus masks.

    Returns c1 (H, W) float32, c5 (H, W) float32, cells: list of (H, W) bool, nuclei: list of
    (H, W) bool, one nucleus per cell, in the same order.
    """
    rng = np.random.default_rng([spec.seed, index])
    h, w = spec.height, spec.width
    scale = min(h, w) / 256
    n_cells = int(rng.integers(9, 15))
    cells, nuclei = [], []
    placed: list[tuple[float, float, float]] = []  # (cy, cx, radius)
    for _attempt in range(2000):
        if len(cells) == n_cells:
            break
        radius = rng.uniform(14, 24) * scale
        if placed and rng.random() < 0.5:  # macrophages cluster: grow next to a placed cell
            py, px, pr = placed[int(rng.integers(len(placed)))]
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 1.0) * (pr + radius)
            cy, cx = py + dist * np.sin(ang), px + dist * np.cos(ang)
        else:
            cy, cx = rng.uniform(-0.05 * h, 1.05 * h), rng.uniform(-0.05 * w, 1.05 * w)
        # Neighbours touch and overlap a little, never sit on top of each other.
        if any(np.hypot(cy - y, cx - x) < 0.8 * (r + radius) for y, x, r in placed):
            continue
        cell = _blob((h, w), cy, cx, radius, rng, lobes=4)
        ang = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(0, 0.25) * radius
        nuc = _blob(
            (h, w),
            cy + off * np.sin(ang),
            cx + off * np.cos(ang),
            rng.uniform(0.38, 0.55) * radius,
            rng,
            lobes=2,
        ) & ndi.binary_erosion(cell, iterations=2)
        if nuc.sum() < 10:
            continue
        placed.append((cy, cx, radius))
        cells.append(cell)
        nuclei.append(nuc)

    yy, xx = np.mgrid[:h, :w]
    gy, gx = rng.uniform(-1, 1, size=2)
    illum = 0.75 + 0.25 * (gy * (yy / h - 0.5) + gx * (xx / w - 0.5)) * 2
    c1 = np.zeros((h, w), np.float32)
    c5 = np.zeros((h, w), np.float32)
    for cell, nuc in zip(cells, nuclei, strict=True):
        edt = ndi.distance_transform_edt(cell)
        rim = np.exp(-edt / (3 * scale))  # CD11b is a surface stain: brighter towards the rim
        texture = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 2) * 0.5
        c1 += cell * rng.uniform(0.35, 0.7) * (0.7 + 0.5 * rim + 0.2 * texture)
        c5 += nuc * rng.uniform(0.5, 0.9) * (0.9 + 0.3 * texture)
    c1, c5 = c1 * illum + 0.08, c5 * illum + 0.05
    c1 = ndi.gaussian_filter(c1, 1.2 * scale)
    c5 = ndi.gaussian_filter(c5, 1.0 * scale)
    c1 = rng.poisson(np.clip(c1, 0, None) * 60) / 60 + rng.normal(0, 0.02, (h, w))
    c5 = rng.poisson(np.clip(c5, 0, None) * 80) / 80 + rng.normal(0, 0.015, (h, w))
    return np.clip(c1, 0, 1).astype(np.float32), np.clip(c5, 0, 1).astype(np.float32), cells, nuclei


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _false_colour(c1: np.ndarray | None, c5: np.ndarray | None) -> np.ndarray:
    """8-bit RGB with the BBBC020 lookup: c1 in R and G (R equals G), c5 in B."""
    shape = (c1 if c1 is not None else c5).shape
    rgb = np.zeros((*shape, 3), np.uint8)
    if c1 is not None:
        rgb[..., 0] = rgb[..., 1] = np.round(c1 * 255).astype(np.uint8)
    if c5 is not None:
        rgb[..., 2] = np.round(c5 * 255).astype(np.uint8)
    return rgb


def generate_demo(root: str | Path, spec: DemoSpec = DemoSpec()) -> Path:
    """Write the demo dataset under `root` (atomically, as one folder) and return `root`.

    A folder that already holds a complete demo for the same spec is reused unchanged.
    """
    root = Path(root)
    stamp = f"{spec}\n"
    if (root / "DEMO_SPEC").is_file() and (root / "DEMO_SPEC").read_text() == stamp:
        log.info("demo dataset already present at %s", root)
        return root
    with atomic_path(root) as tmp:
        images = tmp / "BBBC020_v1_images"
        cells_dir = tmp / "BBC020_v1_outlines_cells"
        nuclei_dir = tmp / "BBC020_v1_outlines_nuclei"
        for d in (images, cells_dir, nuclei_dir):
            d.mkdir(parents=True)
        for index, name in enumerate(field_names(spec.n_fields)):
            c1, c5, cells, nuclei = synth_field(spec, index)
            fdir = images / name
            fdir.mkdir()
            write_tif(fdir / f"{name}_c1.TIF", _false_colour(c1, None), photometric="rgb")
            write_tif(fdir / f"{name}_c5.TIF", _false_colour(None, c5), photometric="rgb")
            write_tif(fdir / f"{name}_(c1+c5).TIF", _false_colour(c1, c5), photometric="rgb")
            if any(cond in name for cond in UNLABELLED_CONDITIONS):
                continue
            # As in BBBC020, annotators skipped objects touching the image border.
            kept = [(c, n) for c, n in zip(cells, nuclei, strict=True) if not _touches_border(c)]
            for n, (cell, nuc) in enumerate(kept):
                write_tif(cells_dir / f"{name}_c1_{n}.TIF", cell.astype(np.uint8) * 255)
                write_tif(nuclei_dir / f"{name}_c5_{n}.TIF", nuc.astype(np.uint8) * 255)
        (tmp / "DEMO_SPEC").write_text(stamp)
    log.info("wrote demo dataset (%d fields) to %s", spec.n_fields, root)
    return root
