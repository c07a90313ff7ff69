"""What a scientist reads off a segmentation: per-object measurements and an overlay picture.

Per object (one row): image, label, area, centroid (y, x) and the mean raw intensity of every
channel; areas and centroids also in µm² / µm when the pixel size is known. Per image: the
object count. Labels follow the project convention ((H, W) integers, 0 = background).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import DataError


def pixel_size_from_tif(path) -> float | None:
    """The pixel size in µm recorded in a TIF (ImageJ ``unit`` micron with X resolution, or a
    resolution unit of centimetres), else None."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page, ij = tif.pages[0], tif.imagej_metadata or {}
            tag = page.tags.get("XResolution")
            unit = page.tags.get("ResolutionUnit")
            if tag is None:
                return None
            num, den = tag.value
            if not num:
                return None
            per_unit = den / num  # units per pixel
            if str(ij.get("unit", "")).lower() in ("micron", "um", "µm", "\\u00b5m"):
                return float(per_unit)
            if unit is not None and int(unit.value) == 3:  # centimetre
                return float(per_unit * 1e4)
    except (OSError, ValueError, KeyError, TypeError, tifffile.TiffFileError):
        return None
    return None


def measure(
    labels: np.ndarray,
    raw: np.ndarray,
    channels: list[str],
    image: str,
    pixel_size_um: float | None = None,
) -> pd.DataFrame:
    """One row per object of `labels` ((H, W), 0 = background) measured on `raw` ((C, H, W)
    intensities as read, C = len(`channels`))."""
    from skimage.measure import regionprops_table

    if raw.ndim != 3 or raw.shape[1:] != labels.shape or raw.shape[0] != len(channels):
        raise DataError(
            f"{image}: image shape {raw.shape} does not match labels {labels.shape} with "
            f"channels {channels}"
        )
    props = regionprops_table(
        labels.astype(np.int64),
        intensity_image=np.moveaxis(raw, 0, -1).astype(np.float64),
        properties=("label", "area", "centroid", "intensity_mean"),
    )
    table = pd.DataFrame(
        {
            "image": image,
            "label": props["label"],
            "area_px": props["area"].astype(np.int64),
            "centroid_y_px": props["centroid-0"],
            "centroid_x_px": props["centroid-1"],
            **{f"mean_{c}": props[f"intensity_mean-{i}"] for i, c in enumerate(channels)},
        }
    )
    if pixel_size_um:
        table["area_um2"] = table["area_px"] * pixel_size_um**2
        table["centroid_y_um"] = table["centroid_y_px"] * pixel_size_um
        table["centroid_x_um"] = table["centroid_x_px"] * pixel_size_um
    return table


def overlay_png(raw: np.ndarray, labels: np.ndarray) -> bytes:
    """PNG bytes: the first channel, contrast-stretched, with the objects' outlines."""
    import cv2

    from pipeline.evaluate.plots import overlay_rgb

    first = raw[0].astype(np.float32)
    lo, hi = np.percentile(first, (1, 99.8)) if first.size else (0.0, 1.0)
    grey = np.clip((first - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = overlay_rgb(grey, None, labels)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    if not ok:
        raise DataError(f"could not encode an overlay of shape {rgb.shape}")
    return png.tobytes()
