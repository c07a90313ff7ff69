"""Pictures for the evaluate stage: contour overlays, side-by-side comparisons, metric plots.

Colours everywhere: ground-truth contours green, predicted contours magenta, on the grey image.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from pipeline.evaluate.metrics import IOU_THRESHOLDS  # noqa: E402
from pipeline.segment.filters import inner_boundaries  # noqa: E402

GT_COLOUR = (40, 230, 40)
PRED_COLOUR = (255, 40, 255)
LEGEND = "green: ground truth, magenta: prediction"


def _contour(labels: np.ndarray, mode: str, width: int) -> np.ndarray:
    if mode == "inner":
        return inner_boundaries(labels, width)
    edge = find_boundaries(labels, mode=mode)
    return ndi.binary_dilation(edge, iterations=width - 1) if width > 1 else edge


def contour_width(shape: tuple[int, ...]) -> int:
    """Contour width in px for a picture of `shape`: 1 px up to 400 px a side, 2 up to 800..."""
    return max(1, math.ceil(max(shape) / 400))


def overlay_rgb(image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) uint8: grey `image` (H, W) float in [0, 1] with GT and prediction contours.

    `gt` / `pred` are (H, W) integer labels (0 = background) or None to leave them out. Contours
    thicken with the image size (1 px up to 400 px, 2 px up to 800 px, ...) to stay visible
    when the picture is shown scaled down.
    """
    if image.ndim != 2:
        raise ValueError(f"overlay_rgb expects an (H, W) image, got shape {image.shape}")
    for name, lab in (("gt", gt), ("pred", pred)):
        if lab is not None and lab.shape != image.shape:
            raise ValueError(f"{name} shape {lab.shape} != image shape {image.shape}")
    grey = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    width = contour_width(image.shape)
    if gt is not None:
        rgb[_contour(gt, "outer", width)] = GT_COLOUR
    if pred is not None:
        rgb[_contour(pred, "inner", width)] = PRED_COLOUR
    return rgb


def comparison_figure(
    image: np.ndarray,
    gt: np.ndarray,
    overlays: dict[str, np.ndarray],
    scores: dict[str, dict[str, float]],
    title: str,
) -> Figure:
    """All methods on one field, side by side: a ground-truth panel, then one panel per method.

    `overlays` maps method -> its `overlay_rgb` picture; `scores` maps method -> metrics shown
    under its name (``f1``, ``aji`` and ``fg_iou`` where present).
    """
    panels = [("ground truth", overlay_rgb(image, gt, None), "")]
    for name, rgb in overlays.items():
        s = scores.get(name, {})
        sub = "  ".join(f"{k} {s[k]:.2f}" for k in ("f1", "aji", "fg_iou") if k in s)
        panels.append((name, rgb, sub))
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    aspect = image.shape[0] / image.shape[1]
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, figsize=(3.6 * ncols, (3.6 * aspect + 0.7) * nrows + 0.4)
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, rgb, sub) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(rgb, interpolation="antialiased")
        ax.set_title(f"{name}\n{sub}" if sub else name, fontsize=9)
    fig.suptitle(f"{title}  ({LEGEND})", fontsize=10)
    fig.tight_layout()
    return fig


def per_image_figure(
    table: pd.DataFrame, metrics: tuple[str, ...] = ("fg_iou", "f1", "aji")
) -> Figure:
    """One panel per metric: its value on every test field (x), one line per method."""
    metrics = tuple(m for m in metrics if m in table.columns)
    fields = list(dict.fromkeys(table["field_id"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    x = np.arange(len(fields))
    for ax, metric in zip(axes[0], metrics, strict=True):
        wide = table.pivot_table(index="field_id", columns="method", values=metric, sort=False)
        for method in dict.fromkeys(table["method"]):
            ax.plot(x, wide.loc[fields, method].to_numpy(), marker="o", ms=4, lw=1, label=method)
        ax.set_title(metric, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(x, fields, rotation=60, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def ap_curve_figure(table: pd.DataFrame) -> Figure:
    """Mean AP (DSB definition) against the IoU threshold, one line per method."""
    cols = [f"ap_{round(t * 100)}" for t in IOU_THRESHOLDS]
    means = table.groupby("method", sort=False)[cols].mean()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method, row in means.iterrows():
        ax.plot(IOU_THRESHOLDS, row.to_numpy(), marker="o", ms=4, label=str(method))
    ax.set_xlabel("IoU threshold t")
    ax.set_ylabel("AP(t) = TP / (TP + FP + FN)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    """Render and close `fig`; returns the PNG file content."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
