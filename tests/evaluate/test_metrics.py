"""Metrics: hand-made cases with known answers, and cross-checks on random label images against
independent implementations (scikit-image's contingency table, brute-force per-object loops)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk
from skimage.metrics import contingency_table

from pipeline.config.sections import BORDER_POLICIES
from pipeline.evaluate.metrics import (
    IOU_THRESHOLDS,
    SUMMARY_METRICS,
    aggregated_jaccard,
    apply_border_policy,
    crop_border,
    describe_border_policy,
    foreground_dice,
    foreground_iou,
    instance_scores,
    iou_matrix,
    match,
    overlap_table,
    score_image,
    truth_for_many,
)


def squares(shape=(40, 60), boxes=()) -> np.ndarray:
    """Label image with object i + 1 filling box (y0, y1, x0, x1) i."""
    out = np.zeros(shape, np.int32)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        out[y0:y1, x0:x1] = i + 1
    return out


GT2 = squares(boxes=[(5, 15, 5, 15), (20, 30, 30, 40)])  # two 10 x 10 squares


# --- foreground metrics -----


def test_foreground_iou_and_dice_known_values():
    gt = squares(boxes=[(0, 10, 0, 10)])  # 100 px
    pred = squares(boxes=[(0, 10, 5, 15)])  # 100 px, 50 shared
    assert foreground_iou(pred, gt) == pytest.approx(50 / 150)
    assert foreground_dice(pred, gt) == pytest.approx(100 / 200)
    # Foreground metrics ignore instance ids: a relabelled prediction scores the same.
    assert foreground_iou(pred * 7, gt) == foreground_iou(pred, gt)


def test_foreground_empty_conventions():
    empty = np.zeros((8, 8), np.int32)
    full = np.ones((8, 8), np.int32)
    assert foreground_iou(empty, empty) == 1.0 and foreground_dice(empty, empty) == 1.0
    assert foreground_iou(full, empty) == 0.0 and foreground_dice(empty, full) == 0.0


# --- instance metrics: hand-made cases -----


def test_perfect_prediction_scores_one_everywhere():
    pred = np.where(GT2 > 0, 3 - GT2, 0)  # same objects, other ids
    s = score_image(pred, GT2)
    for key in ("fg_iou", "fg_dice", "precision", "recall", "f1", "map", "aji"):
        assert s[key] == 1.0, key
    assert (s["tp"], s["fp"], s["fn"], s["count_error"]) == (2, 0, 0, 0)


def test_one_exact_one_shifted_object():
    # Object 2 shifted by 5 columns: IoU = 50 / 150 = 1/3 < 0.5, so it is an FP and its GT an FN.
    pred = squares(boxes=[(5, 15, 5, 15), (20, 30, 35, 45)])
    s = instance_scores(pred, GT2)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 1)
    assert s["precision"] == s["recall"] == s["f1"] == 0.5
    assert s["ap_50"] == s["ap_95"] == pytest.approx(1 / 3)  # TP / (TP + FP + FN) = 1 / 3
    assert s["map"] == pytest.approx(1 / 3)
    # AJI: C = 100 + 50, U = 100 + 150 (both predictions are used).
    assert s["aji"] == pytest.approx(150 / 250)


def test_ap_per_threshold_follows_the_iou():
    # IoU 0.8: pred 10 x 8 inside a 10 x 10 square. TP for t <= 0.8, miss above.
    gt = squares(boxes=[(0, 10, 0, 10)])
    pred = squares(boxes=[(0, 10, 0, 8)])
    s = instance_scores(pred, gt)
    for t in IOU_THRESHOLDS:
        assert s[f"ap_{round(t * 100)}"] == (1.0 if t <= 0.8 else 0.0), t
    assert s["map"] == pytest.approx(7 / 10)  # 0.50 ... 0.80 are 7 of the 10 thresholds


def test_iou_exactly_half_counts_as_match():
    gt = squares(boxes=[(0, 2, 0, 2)])  # 4 px
    pred = squares(boxes=[(0, 2, 0, 1)])  # 2 px inside: IoU = 0.5 exactly
    assert instance_scores(pred, gt)["tp"] == 1  # documented choice: IoU >= t


def test_one_prediction_covering_two_halves_matches_once():
    # p = g1 | g2 with |g1| = |g2|: IoU 0.5 with both; the one-to-one assignment keeps one TP.
    gt = squares(boxes=[(0, 4, 0, 2), (0, 4, 2, 4)])
    pred = squares(boxes=[(0, 4, 0, 4)])
    s = instance_scores(pred, gt)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)
    # AJI: both GT objects take the same prediction: C = 8 + 8, U = 16 + 16.
    assert s["aji"] == pytest.approx(0.5)


def test_merge_and_split_cases():
    merged = squares(boxes=[(5, 30, 5, 40)])  # one object over both squares (875 px)
    s = instance_scores(merged, GT2)
    assert (s["tp"], s["fp"], s["fn"], s["count_error"]) == (0, 1, 2, -1)
    assert s["aji"] == pytest.approx(200 / (875 + 875))  # merged object taken twice
    split = squares(boxes=[(5, 15, 5, 10), (5, 15, 10, 15), (20, 30, 30, 40)])
    s = instance_scores(split, GT2)
    assert (s["tp"], s["fp"], s["fn"], s["count_error"], s["abs_count_error"]) == (2, 1, 0, 1, 1)
    # GT 1 takes one half (C 50, U 100), GT 2 is exact; the other half adds 50 to U.
    assert s["aji"] == pytest.approx(150 / 250)


def test_match_maximises_the_number_of_pairs_not_the_total_iou():
    iou = np.array([[0.9, 0.35], [0.35, 0.0]])
    rows, cols = match(iou, 0.3)  # max total IoU would keep only (0, 0)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    rows, _ = match(iou, 0.5)
    assert rows.tolist() == [0]


def test_empty_image_conventions():
    empty = np.zeros((10, 10), np.int32)
    obj = squares((10, 10), [(2, 5, 2, 5)])
    both = score_image(empty, empty)
    assert all(both[k] == 1.0 for k in ("fg_iou", "precision", "recall", "f1", "map", "aji"))
    pred_only = score_image(obj, empty)
    assert all(pred_only[k] == 0.0 for k in ("precision", "recall", "f1", "map", "aji", "fg_iou"))
    assert pred_only["count_error"] == 1
    gt_only = score_image(empty, obj)
    assert all(gt_only[k] == 0.0 for k in ("precision", "recall", "f1", "map", "aji", "fg_iou"))
    assert gt_only["count_error"] == -1


def test_non_sequential_ids_are_fine():
    pred = np.where(GT2 == 1, 1000, np.where(GT2 == 2, 7, 0))
    assert instance_scores(pred, GT2 * 50)["f1"] == 1.0


@pytest.mark.parametrize(
    "pred, gt, message",
    [
        (np.zeros((4, 4), int), np.zeros((4, 5), int), "shape"),
        (np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int), "expected \\(H, W\\)"),
        (np.zeros((4, 4), float), np.zeros((4, 4), int), "integer label image"),
        (-np.ones((4, 4), int), np.zeros((4, 4), int), "negative labels"),
    ],
)
def test_bad_inputs_raise_with_the_values(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        score_image(pred, gt)


# --- border policy -----


def test_border_policies():
    gt = squares((20, 20), [(5, 10, 5, 10)])
    pred = squares((20, 20), [(5, 10, 5, 10), (0, 4, 0, 4)])  # second touches the border
    assert score_image(pred, gt, 0, "none")["fp"] == 1
    kept, same_gt = apply_border_policy(pred, gt, "ignore_border_predictions", 0)
    assert set(np.unique(kept)) == {0, 1} and same_gt is gt
    s = score_image(pred, gt, 0, "ignore_border_predictions")
    assert (s["fp"], s["f1"]) == (0, 1.0)
    assert s["notebook_iou"] == pytest.approx(25 / 41)  # the notebook's IoU ignores the policy
    # a true object on the edge, predicted there: a certain miss unless both are left out
    edge_gt = squares((20, 20), [(5, 10, 5, 10), (0, 4, 0, 4)])
    assert score_image(pred, edge_gt, 0, "ignore_border_predictions")["fn"] == 1
    s = score_image(pred, edge_gt, 0, "ignore_border_objects")
    assert (s["tp"], s["fp"], s["fn"], s["fg_iou"]) == (1, 0, 0, 1.0)
    assert "from both" in describe_border_policy("ignore_border_objects", 0)
    cropped = score_image(pred, gt, 4, "crop")
    assert (cropped["fp"], cropped["f1"]) == (0, 1.0)
    assert score_image(pred, gt, 4)["fp"] == 0  # margin > 0 without a policy means crop
    assert crop_border(pred, 4).shape == (12, 12)
    assert "crop: 4 px" in describe_border_policy("crop", 4)
    with pytest.raises(ValueError, match="unknown border policy 'edge'"):
        score_image(pred, gt, 0, "edge")
    with pytest.raises(ValueError, match="does not fit"):
        crop_border(pred, 10)


def test_summary_metrics_are_in_every_score():
    assert set(SUMMARY_METRICS) <= set(score_image(GT2, GT2))


# --- cross-checks on random label images -----


def random_labels(rng: np.random.Generator, shape=(96, 128), n=25) -> np.ndarray:
    """Overlapping random discs painted in order: later discs cover earlier ones."""
    out = np.zeros(shape, np.int32)
    for i in range(n):
        rr, cc = disk(
            (rng.uniform(0, shape[0]), rng.uniform(0, shape[1])), rng.uniform(3, 12), shape=shape
        )
        out[rr, cc] = i + 1
    return out


def perturb(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted, some objects dropped or merged, spurious ones added."""
    pred = np.roll(labels, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    ids = np.unique(pred[pred > 0])
    pred[np.isin(pred, rng.choice(ids, size=len(ids) // 6, replace=False))] = 0
    a, b = rng.choice(ids, size=2, replace=False)
    pred[pred == a] = b
    extra = random_labels(rng, labels.shape, 4)
    return np.where((pred == 0) & (extra > 0), extra + 1000, pred)


def brute_force_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    g_ids, p_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
    out = np.zeros((len(g_ids), len(p_ids)))
    for i, g in enumerate(g_ids):
        for j, p in enumerate(p_ids):
            gm, pm = gt == g, pred == p
            out[i, j] = (gm & pm).sum() / (gm | pm).sum()
    return out


def kumar_aji(pred: np.ndarray, gt: np.ndarray) -> float:
    """AJI as written in Kumar et al. 2017, Algorithm 1, one object mask at a time."""
    used, c, u = set(), 0, 0
    p_ids = [p for p in np.unique(pred) if p]
    for g in (g for g in np.unique(gt) if g):
        gm = gt == g
        ious = [((gm & (pred == p)).sum() / (gm | (pred == p)).sum(), p) for p in p_ids]
        best_iou, best = max(ious, default=(0.0, None))
        if best_iou > 0:
            pm = pred == best
            c, u = c + (gm & pm).sum(), u + (gm | pm).sum()
            used.add(best)
        else:
            u += gm.sum()
    u += sum((pred == p).sum() for p in p_ids if p not in used)
    return c / u


@pytest.mark.parametrize("seed", range(6))
def test_random_images_against_independent_implementations(seed):
    rng = np.random.default_rng(seed)
    gt = random_labels(rng)
    pred = perturb(rng, gt)
    inter, area_gt, area_pred = overlap_table(pred, gt)
    # scikit-image's sparse contingency table (rows: gt ids, columns: pred ids, incl. 0).
    table = contingency_table(gt, pred).toarray()
    g_ids, p_ids = np.unique(gt), np.unique(pred)
    np.testing.assert_array_equal(inter, table[np.ix_(g_ids[1:], p_ids[1:])])
    iou = iou_matrix(inter, area_gt, area_pred)
    brute = brute_force_iou(pred, gt)
    np.testing.assert_allclose(iou, brute)
    s = instance_scores(pred, gt)
    for t in IOU_THRESHOLDS:  # above 0.5 a pair with IoU >= t is unique: count them directly
        tp = int((brute >= t).sum())
        fp, fn = len(p_ids) - 1 - tp, len(g_ids) - 1 - tp
        assert s[f"ap_{round(t * 100)}"] == pytest.approx(tp / (tp + fp + fn)), t
        if t == 0.5:
            assert (s["tp"], s["fp"], s["fn"]) == (tp, fp, fn)
    assert s["aji"] == pytest.approx(kumar_aji(pred, gt))
    assert aggregated_jaccard(inter, area_gt, area_pred) == s["aji"]
    fg = contingency_table((gt > 0).astype(int), (pred > 0).astype(int)).toarray()
    assert foreground_iou(pred, gt) == pytest.approx(fg[1, 1] / (fg.sum() - fg[0, 0]))


@pytest.mark.parametrize("policy", BORDER_POLICIES)
def test_a_truth_prepared_once_scores_every_prediction_as_the_policy_does(policy):
    rng = np.random.default_rng(3)
    gt = random_labels(rng)  # discs painted over each other: some objects in several pieces
    once, then = truth_for_many(gt, policy)
    for _ in range(4):
        pred = perturb(rng, gt)
        direct = score_image(pred, gt, 3, policy)
        prepared = score_image(pred, once, 3, then)
        direct.pop("notebook_iou"), prepared.pop("notebook_iou")  # the whole image, no policy
        assert prepared == direct


def test_sparse_and_huge_label_ids_give_the_same_overlaps():
    rng = np.random.default_rng(7)
    gt = random_labels(rng)
    pred = perturb(rng, gt)
    expected = overlap_table(pred, gt)
    for ids in (lambda x: x * 7, lambda x: np.where(x > 0, x + 2**31, 0)):  # gaps, huge ids
        got = overlap_table(ids(pred.astype(np.int64)), ids(gt.astype(np.int64)))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
