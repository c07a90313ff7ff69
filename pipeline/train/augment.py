"""Random training crops with augmentation (albumentations), image and labels transformed alike.

A crop is cut at a random zoom (log-uniform in [scale_min, scale_max]: a window of crop/zoom
pixels resized to crop x crop), so the network sees objects from a fraction to a multiple of
their size; then flips and 90-degree turns, mild affine and elastic deformation, gamma and
brightness/contrast, uneven brightness inside objects (a plasma-fractal shadow), noise and
blur. Before all that, with ``train.augment.paste`` > 0 (off by default), copies of the
crop's own objects are pasted touching others (`pipeline.train.paste`), and with
``train.augment.dim`` > 0 (off by default; configs/ctc_nuclei.yaml sets it), some objects are
dimmed on their own (`dim_objects`): in one field nuclei may differ tenfold in brightness, and
a network that never saw a faint nucleus beside bright ones misses it. A dimmed object can
end up fainter than the noise added after it; with ``train.augment.visible`` > 0 such an
object becomes unknown (`hide_invisible`): the loss neither asks the network to find a nucleus
it cannot see nor to call it background. With ``train.augment.jpeg`` > 0 (off by default),
a crop comes back as a colour JPEG export would give it (`pipeline.train.jpeg`). Labels use
nearest-neighbour interpolation so ids survive.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.config.training import AugmentConfig
from pipeline.segment.stats import robust_deviation
from pipeline.train.jpeg import jpeg_export
from pipeline.train.paste import paste_touching
from pipeline.train.targets import UNKNOWN

# the smallest noise width `hide_invisible` assumes, on the [0, 1] normalised image: half a grey
# level of GOWT1 (47 levels between its 1st and 99.8th percentiles; its background is a flat 0)
NOISE_FLOOR = 0.01


def _window(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    around: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A random size x size window of (C, H, W) `image` and (H, W) `labels`, zero-padded
    (background) where the image is smaller; with `around`, a (y, x) pixel, one holding it."""
    _, h, w = image.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)))
        labels = np.pad(labels, ((0, ph), (0, pw)))
        _, h, w = image.shape
    y0, x0 = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    if around is not None:  # the window's corner anywhere that keeps the pixel inside
        y0 = int(rng.integers(max(0, around[0] - size + 1), min(h - size, around[0]) + 1))
        x0 = int(rng.integers(max(0, around[1] - size + 1), min(w - size, around[1]) + 1))
    return image[:, y0 : y0 + size, x0 : x0 + size], labels[y0 : y0 + size, x0 : x0 + size]


def dim_objects(
    image: np.ndarray,
    labels: np.ndarray,
    p: float,
    rng: np.random.Generator,
    dimmest: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) float32 `image` with each object of the (H, W) `labels` (0 = background,
    negative = unknown), with probability `p`, dimmed: its signal above the background level
    (the median of the background pixels) scaled by a factor log-uniform in [`dimmest`, 1]. The
    gain is blurred by 1 px so the object's own edge, not the label's, stays in the image.
    Returns the image and the ids of the objects dimmed."""
    from scipy import ndimage as ndi

    if not 0 < dimmest <= 1:
        raise ValueError(f"dimmest must be in (0, 1] (train.augment.dimmest), got {dimmest}")
    ids = np.unique(labels[labels > 0])
    chosen = ids[rng.random(ids.size) < p]
    background = labels == 0
    if not chosen.size or not background.any():
        return image, chosen[:0]
    lut = np.ones(int(labels.max()) + 1, np.float32)
    lut[chosen] = np.exp(rng.uniform(np.log(dimmest), 0.0, chosen.size))
    gain = ndi.gaussian_filter(lut[np.maximum(labels, 0)], 1.0)
    level = np.median(image[:, background], axis=1)[:, None, None]
    return (level + (image - level) * gain).astype(np.float32), chosen


def hide_invisible(
    image: np.ndarray, labels: np.ndarray, ids: np.ndarray, widths: float
) -> np.ndarray:
    """(H, W) int32 `labels` with each object of `ids` whose mean in the (C, H, W) `image` lies
    less than `widths` noise widths above the background's median marked UNKNOWN (-1). The
    noise width is the background's robust standard deviation (`robust_deviation`, at least
    NOISE_FLOOR), so a faint object counts as visible on a clean background, not in heavy
    noise. The channel where it stands out most decides."""
    background = labels == 0
    if not ids.size or widths <= 0 or not background.any():
        return labels
    bg = image[:, background]
    level = np.median(bg, axis=1)
    width = np.maximum(robust_deviation(bg, level[:, None], axis=1), NOISE_FLOOR)
    out = labels.copy()
    for i in ids:
        inside = labels == i
        if not inside.any():
            continue
        contrast = image[:, inside].mean(axis=1) - level
        if not np.any(contrast >= widths * width):
            out[inside] = UNKNOWN
    return out


def build_transform(aug: AugmentConfig, crop: int, seed: int | None = None):
    """The albumentations pipeline for one crop (HWC float32 image in [0, 1], float labels);
    `seed` makes its random draws reproducible."""
    import albumentations as A
    import cv2

    geometric = [
        # INTER_NEAREST_EXACT: OpenCV's INTER_NEAREST resize shifts the labels half a pixel
        # against the linearly resized image, and the network learned the shifted outlines
        A.Resize(
            crop, crop, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT
        ),
        A.RandomRotate90(),
        A.HorizontalFlip(),
    ]
    if not aug.enabled:
        return A.Compose(geometric, seed=seed)
    return A.Compose(
        [
            *geometric,
            A.Affine(
                rotate=(-15, 15),
                shear=(-8, 8),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                p=0.5,
            ),
            A.ElasticTransform(
                alpha=crop / 4,
                sigma=crop / 20,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=aug.elastic,
            ),
            A.OneOf(
                [
                    A.RandomGamma(gamma_limit=(50, 200)),
                    A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.4),
                ],
                p=aug.intensity,
            ),
            # mottled, dark-spotted interiors (chromatin, nucleoli) that must not split an object
            A.PlasmaShadow(
                shadow_intensity_range=(0.3, 0.7), plasma_size=crop, roughness=3.0, p=aug.texture
            ),
            A.GaussianBlur(blur_limit=(3, 7), p=aug.blur),
            A.GaussNoise(std_range=(0.01, 0.08), p=aug.noise),
        ],
        seed=seed,
    )


def random_crop(
    image: np.ndarray,
    labels: np.ndarray,
    crop: int,
    aug: AugmentConfig,
    rng: np.random.Generator,
    transform=None,
    zoom: float = 1.0,
    contacts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented crop: (C, crop, crop) float32 image in [0, 1], (crop, crop) int32 labels.

    `transform` is `build_transform(aug, crop)` (pass it in to build it once per worker; without
    it one is built seeded from `rng`, so the crop depends on `rng` alone);
    `zoom` is the field's own scale factor, applied before the random one. `contacts`: the
    (N, 2) pixels where two objects touch (`targets.contact_band`); with probability
    ``aug.contact_crops`` the crop holds one of them, drawn at random."""
    if aug.enabled:
        zoom *= math.exp(rng.uniform(math.log(aug.scale_min), math.log(aug.scale_max)))
    size = max(8, round(crop / zoom))
    around = None
    if contacts is not None and len(contacts) and rng.random() < aug.contact_crops:
        around = contacts[rng.integers(len(contacts))]
    window, lab = _window(image, labels, size, rng, around)
    if aug.enabled and aug.paste:
        window, lab = paste_touching(window, lab, aug.paste, rng)
    dimmed = np.zeros(0, lab.dtype)
    if aug.enabled and aug.dim:
        window, dimmed = dim_objects(window, lab, aug.dim, rng, aug.dimmest)
    if transform is None:
        transform = build_transform(aug, crop, seed=int(rng.integers(2**31)))
    out = transform(
        image=np.ascontiguousarray(window.transpose(1, 2, 0)), mask=lab.astype(np.float32)
    )
    img = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
    img = np.ascontiguousarray((img[..., None] if img.ndim == 2 else img).transpose(2, 0, 1))
    if aug.enabled and aug.jpeg and rng.random() < aug.jpeg:
        img = jpeg_export(img, rng)
    labels_out = np.rint(out["mask"]).astype(np.int32)
    return img, hide_invisible(img, labels_out, dimmed, aug.visible)
