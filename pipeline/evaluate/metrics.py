"""Segmentation metrics for one image pair of (H, W) integer label images.

Label convention: 0 = background, every other value is one object (ids need not be sequential).
P and G are the predicted and ground-truth foreground (label > 0); p and g single objects.

Foreground (semantic) metrics:

- ``fg_iou`` = |P & G| / |P | G|, pooled over the pixels of one image; callers average it over
  images. This is the reference notebook's definition.
- ``fg_dice`` = 2 |P & G| / (|P| + |G|).

Instance metrics. IoU(g, p) = |g & p| / |g | p|, from a contingency table of the two label images
(one ``np.bincount``). At an IoU threshold t, ``scipy.optimize.linear_sum_assignment`` picks the
one-to-one assignment with the most pairs of IoU >= t (ties: the larger total IoU). Such pairs
are true positives (TP); unmatched predictions are false positives (FP), unmatched ground-truth
objects false negatives (FN). We count IoU >= t, as stardist and Cellpose do (the DSB 2018 text
says "above"; the two differ only on exact ties). For t > 0.5 each object has at most one
partner, so the assignment only matters at t <= 0.5.

- ``precision`` = TP / (TP + FP), ``recall`` = TP / (TP + FN), ``f1`` = 2 TP / (2 TP + FP + FN),
  all at t = 0.5.
- ``ap_<t>`` = TP / (TP + FP + FN) at t (the Data Science Bowl 2018 per-image "precision");
  ``map`` = its mean over t = 0.50, 0.55, ..., 0.95.
- ``aji``, aggregated Jaccard index (Kumar et al., IEEE TMI 2017): every ground-truth object g
  takes the prediction p* of highest IoU with it (a prediction may be taken more than once); C
  sums |g & p*| and U sums |g | p*| (just |g| when g overlaps nothing); U also adds the area of
  every prediction never taken. AJI = C / U.
- ``count_error`` = n_pred - n_gt (signed); ``abs_count_error`` = |n_pred - n_gt|.

Empty images: no ground-truth object and no predicted object scores 1.0 on every ratio (nothing
to find, nothing wrong). Otherwise a ratio with a zero denominator scores 0.0 (precision with no
prediction, recall with no ground truth, as stardist), so predictions on an empty ground truth
and an empty prediction on a non-empty ground truth both score 0 everywhere.

Border policy (BBBC020 annotators skipped objects touching the image border), applied to both
images before scoring:

- ``none``: score the whole image;
- ``crop``: drop ``margin`` pixels from each edge of both images;
- ``ignore_border_predictions``: remove predicted objects touching the image edge; the ground
  truth is left unchanged (BBBC020 ground truth has no border objects);
- ``ignore_border_objects``: remove the objects touching the image edge from both, so none is
  scored (ground truth that skips most edge objects but keeps a few, like the CTC silver truth:
  under the policy above each kept one is a certain miss, as its prediction touches the edge
  and is removed).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import clear_border

from pipeline.config.sections import BORDER_POLICIES

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, ..., 0.95
MATCH_THRESHOLD = 0.5  # precision / recall / F1
# Per-method summary metrics (means over images): name -> (best, definition); best is "max"
# (higher is better), "min" (lower is better) or "zero" (closest to 0 is best).
SUMMARY_METRICS: dict[str, tuple[str, str]] = {
    "fg_iou": ("max", "foreground IoU |P&G|/|P|G| per image (notebook formula), border policy on"),
    "fg_dice": ("max", "foreground Dice 2|P&G|/(|P|+|G|) per image"),
    "notebook_iou": ("max", "the notebook's score: foreground IoU of the whole image, no policy"),
    "precision": ("max", "TP/(TP+FP), objects matched one-to-one at IoU >= 0.5"),
    "recall": ("max", "TP/(TP+FN) at IoU >= 0.5"),
    "f1": ("max", "2TP/(2TP+FP+FN) at IoU >= 0.5"),
    "map": ("max", "Data Science Bowl mAP: mean over t = 0.50:0.05:0.95 of TP/(TP+FP+FN)"),
    "aji": ("max", "aggregated Jaccard index (Kumar et al. 2017)"),
    "abs_count_error": ("min", "|number of predicted objects - number of true objects|"),
    "count_error": ("zero", "predicted minus true object count (signed)"),
}


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    if pred.ndim != 2:
        raise ValueError(f"expected (H, W) label images, got {pred.ndim}-D shape {pred.shape}")
    for name, a in (("prediction", pred), ("ground truth", gt)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"{name} must be an integer label image, got dtype {a.dtype}")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} has negative labels (min {a.min()}); 0 = background")


def _ratio(num: float, den: float, both_empty: bool = True) -> float:
    """num / den; a zero denominator gives 1.0 if both images are empty, else 0.0."""
    return float(num / den) if den else float(both_empty)


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P & G| / |P | G| for one image; 1.0 when both are empty."""
    _check(pred, gt)
    p, g = pred > 0, gt > 0
    return _ratio(np.logical_and(p, g).sum(), np.logical_or(p, g).sum())


def foreground_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """2 |P & G| / (|P| + |G|) for one image; 1.0 when both are empty."""
    _check(pred, gt)
    p, g = pred > 0, gt > 0
    return _ratio(2 * np.logical_and(p, g).sum(), p.sum() + g.sum())


def crop_border(array: np.ndarray, margin: int) -> np.ndarray:
    """Drop `margin` pixels from each edge of an (..., H, W) array (0 = no crop)."""
    if margin < 0 or 2 * margin >= min(array.shape[-2:]):
        raise ValueError(f"border margin {margin} does not fit an image of shape {array.shape}")
    if not margin:
        return array
    return array[..., margin : array.shape[-2] - margin, margin : array.shape[-1] - margin]


def apply_border_policy(
    pred: np.ndarray, gt: np.ndarray, policy: str, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (pred, gt) pair that is scored under `policy` (see the module docstring)."""
    _check(pred, gt)
    if policy == "none":
        return pred, gt
    if policy == "crop":
        return crop_border(pred, margin), crop_border(gt, margin)
    if policy == "ignore_border_predictions":
        return clear_border(pred), gt
    if policy == "ignore_border_objects":
        return clear_border(pred), clear_border(gt)
    raise ValueError(
        f"unknown border policy {policy!r}; choose one of {', '.join(BORDER_POLICIES)}"
    )


def truth_for_many(gt: np.ndarray, policy: str) -> tuple[np.ndarray, str]:
    """(gt', policy') such that scoring any prediction against gt' under policy' gives the
    metrics of scoring it against `gt` under `policy` (``notebook_iou`` aside): the truth's half
    of the policy done once, for scoring many predictions of one field (tuning)."""
    if policy == "ignore_border_objects":  # clear_border leaves no edge object: idempotent
        return clear_border(gt), "ignore_border_predictions"
    return gt, policy


def describe_border_policy(policy: str, margin: int) -> str:
    """One sentence stating the policy, for summaries and reports."""
    if policy == "none":
        return "none: whole images scored, border objects included"
    if policy == "crop":
        return f"crop: {margin} px removed from each edge of prediction and ground truth"
    if policy == "ignore_border_predictions":
        return "ignore_border_predictions: predicted objects touching the image edge removed"
    if policy == "ignore_border_objects":
        return "ignore_border_objects: objects touching the image edge removed from both"
    raise ValueError(
        f"unknown border policy {policy!r}; choose one of {', '.join(BORDER_POLICIES)}"
    )


def overlap_table(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel overlaps of every object pair in one pass (a contingency table via np.bincount).

    Returns ``inter`` (n_gt, n_pred) int64 with |g & p|, and the object areas ``area_gt``
    (n_gt,) and ``area_pred`` (n_pred,); objects are ordered by ascending label id.
    """
    _check(pred, gt)
    n_g, g_idx = _dense_ids(gt.ravel())
    n_p, p_idx = _dense_ids(pred.ravel())
    counts = np.bincount(g_idx * n_p + p_idx, minlength=n_g * n_p).reshape(n_g, n_p)
    return counts[1:, 1:], counts.sum(axis=1)[1:], counts.sum(axis=0)[1:]


def _dense_ids(labels: np.ndarray) -> tuple[int, np.ndarray]:
    """1-D labels (0 = background) -> (number of ids with 0 counted, each pixel's index among
    them in ascending id order, 0 for background). Linear time when ids are at most a few per
    pixel (the usual 1..n); np.unique's sort otherwise."""
    top = int(labels.max(initial=0))
    if top > 4 * labels.size:
        ids, idx = np.unique(np.r_[0, labels], return_inverse=True)
        return len(ids), idx[1:]
    present = np.bincount(labels, minlength=top + 1) > 0
    present[0] = True
    lookup = np.cumsum(present) - 1
    return int(present.sum()), lookup[labels]


def iou_matrix(inter: np.ndarray, area_gt: np.ndarray, area_pred: np.ndarray) -> np.ndarray:
    """(n_gt, n_pred) float64 IoU from `overlap_table`'s outputs."""
    union = area_gt[:, None] + area_pred[None, :] - inter
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def match(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching at `threshold`: (gt indices, pred indices) of the TP pairs."""
    rows = np.flatnonzero((iou >= threshold).any(axis=1))
    cols = np.flatnonzero((iou >= threshold).any(axis=0))
    if not len(rows):
        return rows, cols
    sub = iou[np.ix_(rows, cols)]
    ok = sub >= threshold
    # Each pair above the threshold is worth 1; the IoU term (< 0.5 in total) only breaks ties.
    r, c = linear_sum_assignment(-(ok + sub / (2 * min(sub.shape))))
    keep = ok[r, c]
    return rows[r[keep]], cols[c[keep]]


def aggregated_jaccard(inter: np.ndarray, area_gt: np.ndarray, area_pred: np.ndarray) -> float:
    """AJI (Kumar et al. 2017) from `overlap_table`'s outputs; 1.0 when both images are empty."""
    if not len(area_gt):
        return _ratio(0, area_pred.sum())
    if not len(area_pred):
        return _ratio(0, area_gt.sum())
    union = area_gt[:, None] + area_pred[None, :] - inter
    best = iou_matrix(inter, area_gt, area_pred).argmax(axis=1)
    hit = inter[np.arange(len(area_gt)), best] > 0
    rows = np.flatnonzero(hit)
    total_inter = inter[rows, best[hit]].sum()
    total_union = union[rows, best[hit]].sum() + area_gt[~hit].sum()
    unused = np.ones(len(area_pred), bool)
    unused[best[hit]] = False
    return _ratio(total_inter, total_union + area_pred[unused].sum())


def instance_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Counts, precision/recall/F1 at IoU 0.5, AP per threshold, mAP, AJI and count errors."""
    inter, area_gt, area_pred = overlap_table(pred, gt)
    iou = iou_matrix(inter, area_gt, area_pred)
    n_gt, n_pred = len(area_gt), len(area_pred)
    out: dict[str, float] = {"n_gt": n_gt, "n_pred": n_pred}
    aps = []
    for t in IOU_THRESHOLDS:
        tp = len(match(iou, t)[0])
        fp, fn = n_pred - tp, n_gt - tp
        aps.append(_ratio(tp, tp + fp + fn))
        out[f"ap_{round(t * 100)}"] = aps[-1]
        if t == MATCH_THRESHOLD:
            out |= {
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": _ratio(tp, tp + fp, n_gt == 0),
                "recall": _ratio(tp, tp + fn, n_pred == 0),
                "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            }
    out["map"] = float(np.mean(aps))
    out["aji"] = aggregated_jaccard(inter, area_gt, area_pred)
    out["count_error"] = n_pred - n_gt
    out["abs_count_error"] = abs(n_pred - n_gt)
    return out


def score_image(
    pred: np.ndarray, gt: np.ndarray, border_margin: int = 0, border_policy: str | None = None
) -> dict[str, float]:
    """Every metric for one image pair after the border policy.

    `border_policy` None means "crop" when `border_margin` > 0, else "none". ``notebook_iou`` is
    the reference notebook's score: foreground IoU over the whole image, ignoring the policy.
    """
    policy = border_policy or ("crop" if border_margin else "none")
    notebook = foreground_iou(pred, gt)
    pred, gt = apply_border_policy(pred, gt, policy, border_margin)
    return {
        "fg_iou": foreground_iou(pred, gt),
        "fg_dice": foreground_dice(pred, gt),
        "notebook_iou": notebook,
        **instance_scores(pred, gt),
    }
