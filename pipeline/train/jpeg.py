"""A crop as a colour JPEG export gives it back (augmentation for exported images).

Microscope software often exports a nucleus channel in its lookup colour as a JPEG: blue for
DAPI or Hoechst, green for GFP. JPEG keeps most of a blue image in its colour-difference
(chroma) planes, which it halves in resolution and quantises coarsely: on a dim range the
background around each nucleus becomes flat plates a few grey levels high, block by block,
while the noise between them is quantised away. A network that never met them outlines the
plates with the nuclei (docs/experiments.md, "Colour JPEG exports"). `jpeg_export` renders a
crop the way such an export does (8 bits over a random range, one lookup colour, a random
quality and chroma subsampling), encodes and decodes it with OpenCV's libjpeg, and reads it
back as `pipeline.colour.colour_intensity` reads colour: the largest of its colours.
"""

from __future__ import annotations

import numpy as np

from pipeline.colour import colour_intensity

# lookup colours as OpenCV orders them (blue, green, red) and how often each is drawn: nuclear
# stains are mostly blue, and blue is the one JPEG keeps worst (11% of the brightness it codes
# in full; magenta 41%, red 30%, green 59%)
COLOURS: dict[str, tuple[tuple[int, int, int], float]] = {
    "blue": ((1, 0, 0), 0.4),
    "green": ((0, 1, 0), 0.2),
    "magenta": ((1, 0, 1), 0.15),
    "red": ((0, 0, 1), 0.15),
    "grey": ((1, 1, 1), 0.1),
}
QUALITY = (60, 95)  # JPEG quality, drawn uniformly (Fiji saves at 85, Pillow's default 75)
LEVELS = (20.0, 255.0)  # the export's brightest grey level, drawn log-uniformly: a dim range
SUBSAMPLED = 0.75  # share of exports with chroma at half resolution (4:2:0; else 4:4:4)


def jpeg_export(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) float32 `image` in [0, 1] -> the same shape and range after a colour JPEG
    export of each channel: the channel scaled to a brightest grey level drawn from LEVELS and
    rounded to 8 bits, drawn in a colour of COLOURS, saved as JPEG at a quality from QUALITY
    (4:2:0 chroma with probability SUBSAMPLED, else 4:4:4), decoded, read as the largest of its
    colours and divided by that level again. Labels are untouched: objects keep their place."""
    import cv2

    if image.ndim != 3 or image.dtype != np.float32:
        raise ValueError(f"need a (C, H, W) float32 image, got {image.shape} {image.dtype}")
    names = list(COLOURS)
    weights = np.array([COLOURS[n][1] for n in names])
    out = np.empty_like(image)
    for c, channel in enumerate(image):
        top = float(np.exp(rng.uniform(*np.log(LEVELS))))
        grey = np.rint(np.clip(channel, 0.0, 1.0) * top).astype(np.uint8)
        colour = np.array(COLOURS[names[rng.choice(len(names), p=weights)]][0], np.uint8)
        sampling = (
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
            if rng.random() < SUBSAMPLED
            else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
        )
        params = [
            cv2.IMWRITE_JPEG_QUALITY,
            int(rng.integers(QUALITY[0], QUALITY[1] + 1)),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            sampling,
        ]
        ok, data = cv2.imencode(".jpg", grey[..., None] * colour, params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {grey.shape} crop as JPEG")
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
        out[c] = colour_intensity(decoded).astype(np.float32) / top
    return np.clip(out, 0.0, 1.0)
