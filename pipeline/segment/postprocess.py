"""From the network's output maps to instance labels (0 = background), as the model card says.

The maps are probabilities, (K, H, W) float32: foreground, then (when the card lists them) the
normalised distance to each object's edge and the contact band between touching objects
(`pipeline.train.targets`); the distance is multiplied by (1 - contact) before anything reads
it (`seed_distance`), so a contact the network draws is a valley. Methods:

- ``network``: the network alone. Seeds are the connected cores where the predicted distance
  exceeds ``seed_threshold`` inside the foreground (or, with ``seed_h`` > 0, the maxima of the
  blurred distance at least ``seed_h`` deep: h-maxima; the blur, ``seed_sigma``, is in px of
  the training scale, so it is as wide relative to the objects on every image: `seed_scale`);
  a watershed grows them over the foreground, flooding the negated distance (``flood:
  distance``: touching objects part along its valley) or the negated foreground probability
  (``foreground``: where the network's probability dips between them; on the CTC HeLa frames
  that placed the line closer to the truth, but the tuning then chose other seeds:
  docs/experiments.md). With ``seed_shape`` > 0 the foreground's own shape joins in: its
  distance transform, in radii of the image's objects, weighted by ``seed_shape`` and averaged
  with the predicted distance (a neck in the foreground is a valley too; on the CTC HeLa frames
  the network's distance alone merged touching pairs). Foreground parts without a seed become
  objects of their own. Objects smaller than ``min_object_size`` px or ``min_relative_size``
  times the image's typical object (the area-weighted median, which specks do not drag down) are
  dropped: debris and fragments, at any magnification; so are objects whose mean intensity is
  under ``min_relative_intensity`` times the typical object's (dim, out-of-focus nuclei that an
  annotation may leave out, as the CTC GOWT1 silver truth does; the tuning decides).
- ``watershed``: the classical method's marker split (nuclei of the image for cells,
  distance-transform peaks for nuclei; `pipeline.segment.watershed.split_foreground`) applied to
  the network's foreground: model + classical post-processing.
- ``components``: connected components of the foreground.

Whichever the method, a field none of whose objects stands ``min_field_contrast`` noise
deviations out of the background around it is taken for empty and keeps no object
(`pipeline.segment.contrast.empty_field`: the network draws objects in an empty field's
normalised noise).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pipeline.config import PostprocessConfig
from pipeline.config.sections import INSTANCE_METHODS
from pipeline.errors import ConfigError
from pipeline.segment.card import ModelCard
from pipeline.segment.contrast import empty_field
from pipeline.segment.filters import (
    Parts,
    edt,
    flood,
    gaussian,
    h_maxima,
    label_sparse,
    parts,
)
from pipeline.segment.stats import typical_area, weighted_median
from pipeline.segment.watershed import drop_small, split_foreground

INTENSITY_CUTS = ("min_field_contrast", "min_relative_intensity")  # they need the image


def foreground(prob: np.ndarray, post: PostprocessConfig) -> np.ndarray:
    """(H, W) float probability -> (H, W) bool foreground: above ``post.threshold``, specks
    smaller than ``post.min_object_size`` px removed."""
    return drop_small(prob > post.threshold, post.min_object_size)


def h_maxima_inside(
    dist: np.ndarray, fg: np.ndarray, h: float, fg_parts: Parts | None = None
) -> np.ndarray:
    """(H, W) bool: the maxima of the (H, W) float32 `dist` at least `h` deep within each
    connected part of the (H, W) bool foreground, found part by part (the background costs
    nothing; a part with one maximum, most of them, costs least: `filters.h_maxima`).
    `fg_parts`: `filters.parts(fg)` when the caller has them."""
    out = np.zeros(fg.shape, bool)
    found = parts(fg) if fg_parts is None else fg_parts
    labels = found.labels
    for i, box in enumerate(found.grown_boxes, 1):
        part = labels[box] == i
        out[box] |= h_maxima(np.where(part, dist[box], np.float32(0)), h) & part
    return out


def network_instances(
    fg: np.ndarray,
    dist: np.ndarray,
    post: PostprocessConfig,
    diameter: float = 0.0,
    prob: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) bool foreground and (H, W) predicted normalised distance -> (H, W) int32 labels;
    `diameter`: the object diameter the network was trained at (the card's; 0: none); `prob`:
    the (H, W) float foreground probability (`split_at_seeds`); `image`: the (H, W) float
    normalised intensities (`drop_small_objects`)."""
    fg_parts = parts(fg)  # computed once
    inside = edt(fg, fg_parts) if post.seed_h > 0 or post.seed_shape > 0 else None  # likewise
    size = objects_size(fg, post, inside, fg_parts)
    labels = split_at_seeds(fg, dist, post, size, diameter, prob, inside, fg_parts)
    return drop_small_objects(labels, post, image)


def objects_size(
    fg: np.ndarray,
    post: PostprocessConfig,
    inside: np.ndarray | None = None,
    fg_parts: Parts | None = None,
) -> float:
    """The (H, W) bool foreground's object diameter in px (`scale.foreground_diameter`, which
    takes `inside` and `fg_parts`) when `post`'s seeds depend on it (h-maxima or the shape
    term), else 0.0 (not measured)."""
    if post.seed_h <= 0 and post.seed_shape <= 0:
        return 0.0
    from pipeline.segment.scale import foreground_diameter  # scale imports this module

    return foreground_diameter(fg, inside, fg_parts)


def seed_scale(size: float, diameter: float) -> float:
    """Image px per training px: the objects' measured `size` over the `diameter` the network
    was trained at; 1.0 when either is unknown (0). A blur of fixed px would flatten the
    valleys between small touching nuclei and leave bumps in large textured ones (HeLa and
    GOWT1 asked for seeds of different depths until the blur followed the objects' size).
    Within `scale.LIMITS`, the zooms inference applies: a barely trained model's foreground, one
    part across the field, would otherwise ask for a blur of about a hundred px (a third of a
    second on a 1024x1024 field) that no real objects need."""
    from pipeline.segment.scale import LIMITS  # scale imports this module

    if size <= 0 or diameter <= 0:
        return 1.0
    return float(np.clip(size / diameter, 1 / LIMITS[1], 1 / LIMITS[0]))


# PostprocessConfig.flood -> (the (H, W) foreground probability, the (H, W) distance the seeds
# were cut from) -> the surface the watershed floods, lowest first. The 1 px blur breaks ties.
FLOODS = {
    "distance": lambda prob, dist: -dist,
    "foreground": lambda prob, dist: -gaussian(prob, 1.0),
}


def seed_surface(
    post: PostprocessConfig,
    fg: np.ndarray,
    dist: np.ndarray,
    *,
    size: float = 0.0,
    diameter: float = 0.0,
    inside: np.ndarray | None = None,
) -> np.ndarray:
    """The (H, W) float32 map seeds are cut from and the watershed floods: the predicted
    distance, mixed with the foreground's shape (``post.seed_shape``), blurred when
    ``post.seed_h`` > 0 (arguments as `split_at_seeds`'). It does not depend on ``seed_h``'s
    value or ``seed_threshold``: tuning computes it once for all of them."""
    if post.seed_shape > 0 and size > 0:  # (dist + k x shape) / (1 + k), in one array
        mixed = np.divide(edt(fg) if inside is None else inside, np.float32(size / 2))
        mixed *= np.float32(post.seed_shape)
        mixed += dist.astype(np.float32, copy=False)
        mixed /= np.float32(1 + post.seed_shape)
        dist = mixed
    else:
        dist = dist.astype(np.float32)
    if post.seed_h <= 0:  # threshold seeds: no blur
        return dist
    return gaussian(dist, post.seed_sigma * seed_scale(size, diameter))


def split_at_seeds(
    fg: np.ndarray,
    dist: np.ndarray,
    post: PostprocessConfig,
    size: float = 0.0,
    diameter: float = 0.0,
    prob: np.ndarray | None = None,
    inside: np.ndarray | None = None,
    fg_parts: Parts | None = None,
    *,
    surface: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) bool foreground split at seeds of the (H, W) predicted distance (``post.seed_*``)
    -> (H, W) int32 labels; foreground parts without a seed become objects of their own.
    `size`: the image's object diameter in px (`objects_size`; 0: unknown, no shape term);
    `diameter`: the training one (the blur is ``seed_sigma`` x `seed_scale` px); `prob`: the
    (H, W) float foreground probability the seeds grow over (``post.flood``; default: `fg`);
    `inside`: `edt(fg)` when the caller has it (the shape term's), `fg_parts`: `parts(fg)`
    likewise; `surface`: `seed_surface`'s map when the caller has it. The watershed floods only
    the parts of the foreground with several seeds (`filters.flood`)."""
    if post.flood not in FLOODS:
        raise ConfigError(f"unknown flood {post.flood!r}; use one of {', '.join(FLOODS)}")
    if surface is None:
        surface = seed_surface(post, fg, dist, size=size, diameter=diameter, inside=inside)
    dist = surface
    fg_parts = parts(fg) if fg_parts is None else fg_parts
    if post.seed_h > 0:
        seeds, _ = label_sparse(h_maxima_inside(dist, fg, post.seed_h, fg_parts))
    else:
        seeds, _ = ndi.label(fg & (dist > post.seed_threshold))
    prob = fg if prob is None else prob
    surface = FLOODS[post.flood](prob, dist)
    labels = flood(surface, seeds, fg, fg_parts)
    orphans, n = label_sparse(fg & (labels == 0))
    if n:
        labels[orphans > 0] = orphans[orphans > 0] + labels.max()
    return labels


def drop_small_objects(
    labels: np.ndarray, post: PostprocessConfig, image: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) int32 labels without the objects under ``post.min_object_size`` px or
    ``post.min_relative_size`` x the typical object's area (`typical_area`); none at all when
    ``post.min_field_contrast`` > 0 and none of those left stands that many noise deviations
    out of the background around it in the (H, W) float `image` (`contrast.object_contrast`:
    an empty field); nor, when ``post.min_relative_intensity`` > 0, those whose mean intensity
    is under it x the typical object's (the area-weighted median of the means of the objects
    still kept); relabelled 1..n (a new array). Counted over the objects' pixels alone (a
    sparse field is mostly background), in the same order: the same sums."""
    objects = labels > 0
    flat = labels[objects].astype(np.intp)  # cast once for both counts
    areas = np.bincount(flat, minlength=1)
    smallest = post.min_object_size
    if post.min_relative_size and areas.size > 1:
        smallest = max(smallest, post.min_relative_size * typical_area(areas[1:][areas[1:] > 0]))
    drop = areas < smallest
    if (post.min_field_contrast or post.min_relative_intensity) and areas.size > 1:
        if image is None or image.shape != labels.shape:
            cuts = [f"{k}={getattr(post, k)}" for k in INTENSITY_CUTS if getattr(post, k)]
            raise ValueError(
                f"{' and '.join(cuts)} need(s) the (H, W) image of the {labels.shape} labels; "
                f"got {None if image is None else image.shape} (0 switches a cut off)"
            )
        sums = np.bincount(flat, weights=image[objects], minlength=areas.size)
        means = np.divide(sums, areas, out=np.zeros(areas.size), where=areas > 0)
        kept = (areas > 0) & ~drop
        kept[0] = False
        if kept.any() and empty_field(labels, image, post.min_field_contrast, means, kept):
            drop[:], kept[:] = True, False
        if post.min_relative_intensity and kept.any():
            typical = weighted_median(means[kept], areas[kept])
            drop |= kept & (means < post.min_relative_intensity * typical)
    drop[0] = False
    keep = (areas > 0) & ~drop
    keep[0] = False
    if keep[1:].all():  # every id 1..n present and kept (the usual case): nothing to renumber
        return labels.astype(np.int32)
    new = np.zeros(areas.size, np.int32)  # old label -> new: 1..n in the old order, dropped 0
    new[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    return np.take(new, labels)  # a third of new[labels]'s time


def seed_distance(maps: np.ndarray, outputs: list[str]) -> np.ndarray:
    """The (H, W) distance map the seeds are cut from, out of the (K, H, W) `maps` named by
    `outputs`: the predicted distance, times (1 - contact) when the network draws contacts."""
    dist = maps[outputs.index("distance")]
    if "contact" in outputs:
        dist = dist * (1 - maps[outputs.index("contact")])
    return dist


def to_instances(
    maps: np.ndarray, image: np.ndarray, card: ModelCard, method: str | None = None
) -> np.ndarray:
    """(K, H, W) output maps of the (C, H, W) normalised `image` -> (H, W) int32 instance labels
    with `method` (default: the card's ``postprocess.instances``)."""
    post = card.postprocess
    method = method or post.instances
    if method not in INSTANCE_METHODS:
        raise ConfigError(
            f"unknown instance method {method!r}; use one of {', '.join(INSTANCE_METHODS)}"
        )
    fg = foreground(maps[0], post)
    if method in ("components", "watershed"):
        if method == "components":
            labels = ndi.label(fg, structure=np.ones((3, 3)))[0].astype(np.int32)
        else:
            views = image[: len(card.channels)]  # the percentile view when there are several
            labels = split_foreground(
                fg, views, card.channels, card.channel, card.target, post.watershed
            )
        # the network's own instances apply it among their cuts (`drop_small_objects`), on
        # the objects the size cuts keep, before the faint-object cut: after it, the rings
        # take in the faint objects dropped, and 2 of 9 empty HeLa crops kept objects
        empty = empty_field(labels, image[card.channel_index], post.min_field_contrast)
        return np.zeros_like(labels) if empty else labels
    if "distance" not in card.outputs:
        raise ConfigError(
            f"postprocess.instances=network needs a model with a distance output; this one has "
            f"{card.outputs}: use watershed or components"
        )
    dist = seed_distance(maps, card.outputs)
    return network_instances(
        fg, dist, post, card.diameter, prob=maps[0], image=image[card.channel_index]
    )
