"""The training loop on plain arrays: targets, batches, loss, and train_seg without folders."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from pipeline.config import TrainConfig
from pipeline.config.training import AugmentConfig
from pipeline.errors import ConfigError
from pipeline.segment.card import OUTPUTS, ModelCard
from pipeline.segment.network import build_model
from pipeline.segment.scale import foreground_diameter, median_diameter
from pipeline.train.data import EDGE_BAND, CropStream, batches
from pipeline.train.loop import (
    TrainingDiverged,
    dice_loss,
    seg_loss,
    train_seg,
    validation_scores,
)
from pipeline.train.targets import (
    UNKNOWN,
    contact_band,
    mark_unlabelled_edge,
    normalised_distance,
    target_maps,
)

CARD = ModelCard("resnet18", 1, list(OUTPUTS[:2]), ["fluo"], "nuclei", "fluo", 1.0, 99.8)


def _discs(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n` (1, 96, 96) images with two touching bright discs each, and their label images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    images, labels = [], []
    for _ in range(n):
        lab = np.zeros((96, 96), np.int32)
        cy, cx, r = int(rng.integers(30, 66)), int(rng.integers(25, 45)), int(rng.integers(9, 13))
        lab[np.hypot(yy - cy, xx - cx) < r] = 1
        lab[np.hypot(yy - cy, xx - cx - 2 * r + 2) < r] = 2
        image = (0.8 * (lab > 0) + rng.normal(0.1, 0.05, lab.shape)).clip(0, 1)
        images.append(image[None].astype(np.float32))
        labels.append(lab)
    return images, labels


def test_normalised_distance_has_a_core_per_object():
    _, (lab, *_) = _discs(1, 0)
    dist = normalised_distance(lab)
    assert dist.dtype == np.float32 and dist[lab == 0].max() == 0
    for i in (1, 2):
        assert dist[lab == i].max() == pytest.approx(1.0) and dist[lab == i].min() > 0


def test_the_loss_weighs_more_where_objects_touch():
    _, (lab, *_) = _discs(1, 0)
    lab[0, 0] = UNKNOWN
    band = contact_band(lab)
    touching = np.zeros_like(band)
    for i, j in ((1, 2), (2, 1)):  # object pixels with a pixel of the other object next door
        touching |= (lab == i) & ndi.binary_dilation(lab == j)
    assert band[touching].all() and not band[lab == 0][:10].any()
    assert band.sum() < 0.2 * (lab > 0).sum()  # a narrow band, not the objects
    weight = target_maps(lab, contact_weight=5.0)[2]
    assert set(np.unique(weight[band]).tolist()) == {6.0}
    assert weight[0, 0] == 0 and (weight[~band & (lab != UNKNOWN)] == 1).all()
    assert (target_maps(lab)[2][lab != UNKNOWN] == 1).all()  # off by default
    contact = target_maps(lab)[3]  # the band is also a target of its own, where known
    assert np.array_equal(contact > 0, band & (lab != UNKNOWN)) and contact[0, 0] == 0


def test_crop_stream_yields_augmented_crops_with_targets():
    images, labels = _discs(3, 1)
    stream = CropStream(images, labels, ["a", "a", "b"], crop=64, aug=AugmentConfig(), seed=0)
    x, y = next(batches(stream, batch_size=4, workers=0, epoch=0, pin=False))
    assert x.shape == (4, 1, 64, 64) and x.dtype == torch.float32
    assert y.shape == (4, 4, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(torch.unique(y[:, 0]).tolist()) <= {0.0, 1.0}
    again = next(batches(stream, batch_size=4, workers=0, epoch=0, pin=False))[0]
    assert torch.equal(x, again)  # an epoch's stream is reproducible (resume)


def test_groups_are_drawn_as_often_as_their_weights_say():
    """Three fields of constant brightness 0.2, 0.4, 0.6 in groups set-a-01, set-a-02 and
    set-b-01: the uniform stream draws each group a third of the time, {set-a: 0} only set-b,
    {set-b: 2} set-b half the time (the longest matching name wins)."""
    _, labels = _discs(3, 2)
    images = [np.full((1, 96, 96), v, np.float32) for v in (0.2, 0.4, 0.6)]
    groups = ["set-a-01", "set-a-02", "set-b-01"]
    off = AugmentConfig(enabled=False)

    def shares(weights: dict | None) -> np.ndarray:
        stream = CropStream(images, labels, groups, crop=32, aug=off, seed=0, group_weights=weights)
        x = next(batches(stream, batch_size=600, workers=0, epoch=0, pin=False))[0]
        drawn = np.round(x[:, 0, 0, 0].numpy() * 5).astype(int) - 1  # 0.2 -> 0, 0.4 -> 1, 0.6 -> 2
        return np.bincount(drawn, minlength=3) / len(drawn)

    assert np.allclose(shares(None), 1 / 3, atol=0.06)
    assert np.array_equal(shares({"set-a": 0}), [0, 0, 1])
    assert np.allclose(shares({"set-b": 2}), [0.25, 0.25, 0.5], atol=0.06)
    assert np.allclose(shares({"set-": 5, "set-a-02": 0}), [0.5, 0, 0.5], atol=0.06)
    with pytest.raises(ConfigError, match=r"names set-c, .*groups are set-a-01, set-a-02, set-b"):
        CropStream(images, labels, groups, 32, off, 0, group_weights={"set-c": 1})
    with pytest.raises(ConfigError, match="leave no group to draw from"):
        CropStream(images, labels, groups, 32, off, 0, group_weights={"set": 0})


def _target() -> torch.Tensor:
    """(1, 4, 8, 8) targets: a 4x4 object with a 2x2 core, every pixel known, its last column
    in contact with a neighbour."""
    target = torch.zeros(1, 4, 8, 8)
    target[:, 0, 2:6, 2:6] = 1
    target[:, 1, 3:5, 3:5] = 1
    target[:, 2] = 1
    target[:, 3, 2:6, 5] = 1
    return target


def test_loss_is_lower_for_right_answer():
    target = _target()
    good, bad = (target[:, :2] * 20 - 10), (10 - target[:, :2] * 20)
    assert seg_loss(good, target) < seg_loss(bad, target)


def test_a_pixel_of_weight_two_counts_as_two_pixels_in_the_dice():
    prob = torch.tensor([0.9, 0.2, 0.6, 0.1])
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    doubled = dice_loss(prob, target, torch.tensor([1.0, 1.0, 2.0, 1.0]))
    repeated = dice_loss(prob[[0, 1, 2, 2, 3]], target[[0, 1, 2, 2, 3]], torch.ones(5))
    assert doubled == pytest.approx(float(repeated))
    assert 0 < float(dice_loss(prob, target, torch.full((4,), 16.0))) < 1


def test_a_contact_output_is_trained_on_the_contact_band():
    target = _target()
    maps = torch.cat([target[:, :2], target[:, 3:]], dim=1)
    good = maps * 20 - 10
    no_contact = good.clone()
    no_contact[:, 2] = -10  # right foreground and distance, the contact missed
    assert seg_loss(good, target) < seg_loss(no_contact, target) - 1.0
    assert seg_loss(good[:, :2], target) < 0.1  # two outputs: the contact target is unused


def test_the_loss_ignores_unannotated_pixels():
    target = _target()
    good = target[:, :2] * 20 - 10
    wrong_at_edge = good.clone()
    wrong_at_edge[:, :, :, 0] = 10  # an "object" in the first column, which is unannotated
    target[:, 2, :, 0] = 0
    assert seg_loss(wrong_at_edge, target) == pytest.approx(float(seg_loss(good, target)))
    target[:, 2, :, 0] = 1  # once annotated (as background) the same mistake costs
    assert seg_loss(wrong_at_edge, target) > seg_loss(good, target) + 0.1


def test_unlabelled_pixels_near_the_edge_are_unknown_and_objects_stay():
    labels = np.zeros((40, 50), np.uint16)
    labels[15:25, 20:30] = 7  # labelled, inside
    labels[0:6, 0:6] = 3  # labelled, touching the edge
    marked = mark_unlabelled_edge(labels, band=5)
    assert marked.dtype == np.int32 and np.array_equal(marked[labels > 0], labels[labels > 0])
    assert (marked[:, 45:] == UNKNOWN).all() and (marked[4, 10] == UNKNOWN)
    assert marked[5:35, 6:44][labels[5:35, 6:44] == 0].max() == 0  # inner background is known
    weight = target_maps(marked)[2]
    assert weight[0, 49] == 0 and weight[20, 25] == 1 and weight[2, 2] == 1


def test_a_stream_of_edge_skipping_labels_masks_the_edge_band():
    images, labels = _discs(2, 3)
    off = AugmentConfig(enabled=False)
    stream = CropStream(images, labels, ["a", "b"], crop=96, aug=off, seed=0, unlabelled_edge=True)
    _, y = next(batches(stream, batch_size=2, workers=0, epoch=0, pin=False))
    band = int(EDGE_BAND * min(median_diameter(lab) for lab in labels))
    weight, fg = y[:, 2], y[:, 0]
    assert (weight[:, :, :band][fg[:, :, :band] == 0] == 0).all()  # unlabelled edge: ignored
    assert (weight[fg == 1] == 1).all() and (weight[:, 40:56, 40:56] == 1).all()


def test_a_few_steps_reduce_the_loss_and_every_epoch_is_reported():
    images, labels = _discs(6, 2)
    settings = TrainConfig(epochs=3, steps_per_epoch=6, batch_size=4, crop_size=64, lr=3e-3)
    settings.workers, settings.augment = 0, AugmentConfig(enabled=False)
    torch.manual_seed(0)
    model = build_model(**CARD.arch)
    seen = []
    state = train_seg(
        model,
        (images[:4], labels[:4], ["g"] * 4),
        (images[4:], labels[4:]),
        settings,
        torch.device("cpu"),
        CARD,
        on_epoch=lambda result, state, scored: seen.append(result.epoch),
    )
    assert seen == [0, 1, 2] and state.epoch == 2
    losses = [e.train_loss for e in state.history]
    assert losses[-1] < losses[0], losses
    assert state.best is not None and 0 <= state.best.val_f1 <= 1
    assert all(0 <= e.val_map <= e.val_f1 for e in state.history)  # mAP: F1's bar and higher


@pytest.mark.parametrize("with_flips", [False, True])
def test_each_epoch_is_validated_with_one_pass_unless_the_flips_are_asked_for(with_flips):
    images, labels = _discs(4, 6)
    settings = TrainConfig(epochs=1, steps_per_epoch=6, batch_size=4, crop_size=64, lr=3e-3)
    settings.workers, settings.augment = 0, AugmentConfig(enabled=False)
    settings.validation_flip_tta, settings.ema = with_flips, 0.0
    card, cpu = CARD.for_prediction(flip_tta=True), torch.device("cpu")  # the card's flips on
    val, scored = (images[2:], labels[2:]), []
    torch.manual_seed(0)
    state = train_seg(
        build_model(**card.arch),
        (images[:2], labels[:2], ["g"] * 2),
        val,
        settings,
        cpu,
        card,
        on_epoch=lambda result, state, network: scored.append(network),
    )
    sizes = [median_diameter(y) for y in val[1]]

    def scores(flips: bool) -> tuple[float, float, float]:
        return validation_scores(scored[0], *val, sizes, cpu, card.for_prediction(flips), "auto")

    asked, other = scores(with_flips), scores(not with_flips)
    assert asked != other  # the flips change this network's scores
    epoch = state.history[0]
    assert (epoch.val_fg_iou, epoch.val_f1, epoch.val_map) == asked


def test_a_non_finite_loss_stops_training_with_a_clear_message():
    images, labels = _discs(3, 3)
    images[0][0, 10, 10] = np.nan  # a NaN pixel in a training image
    settings = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=3, crop_size=96)
    settings.workers, settings.augment = 0, AugmentConfig(enabled=False)
    model = build_model(**CARD.arch)
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1.*lower train.lr"):
        train_seg(
            model,
            ([images[0]], [labels[0]], ["g"]),
            (images[1:], labels[1:]),
            settings,
            torch.device("cpu"),
            CARD,
        )


def test_fields_are_zoomed_so_their_objects_have_the_training_diameter():
    images, labels = _discs(2, 2)  # objects 18-24 px across
    off = AugmentConfig(enabled=False)
    native = CropStream(images, labels, ["a", "b"], crop=64, aug=off, seed=0)
    zoomed = CropStream(images, labels, ["a", "b"], crop=64, aug=off, seed=0, diameter=40.0)
    assert native.zooms == [1.0, 1.0]
    assert zoomed.zooms == pytest.approx([40 / median_diameter(x) for x in labels])

    def largest(stream: CropStream) -> float:
        crops = next(batches(stream, batch_size=8, workers=0, epoch=0, pin=False))[1]
        return max(foreground_diameter(y[0].numpy() > 0) for y in crops)

    assert largest(native) < 26 and largest(zoomed) > 1.6 * largest(native)


def test_the_training_diameter_is_the_largest_groups_so_no_dataset_is_shrunk(tmp_path):
    from pipeline.train.stage import training_diameter
    from tests.conftest import make_cfg

    _, small = _discs(3, 3)  # ~20 px, three fields of one group
    yy, xx = np.mgrid[:96, :96]
    big = (np.hypot(yy - 48, xx - 48) < 30).astype(np.int32)  # 60 px, one field
    cfg = make_cfg(tmp_path)
    # three small fields outvote one big one field-wise, yet the big group sets the size
    assert training_diameter(cfg, [*small, big], ["a", "a", "a", "b"]) == pytest.approx(60, abs=2)
    assert training_diameter(cfg, small, ["a"] * 3) == pytest.approx(
        median_diameter(small[0]), abs=3
    )
    # never more than inference's largest enlargement (x4) above the smallest group
    tiny = [(np.hypot(yy - 48, xx - 48) < 5).astype(np.int32)]  # 10 px
    assert training_diameter(cfg, [*tiny, big], ["a", "b"]) == pytest.approx(
        4 * median_diameter(tiny[0])
    )
    # a floor enlarges small objects to it, and leaves larger ones as they are
    cfg.train.min_object_diameter = 40.0
    assert training_diameter(cfg, small, ["a"] * 3) == 40.0
    assert training_diameter(cfg, [*small, big], ["a", "a", "a", "b"]) == pytest.approx(60, abs=2)
    cfg.train.min_object_diameter = 60.0  # but no more than x4 the smallest (10 px) objects
    assert training_diameter(cfg, tiny, ["a"]) == pytest.approx(4 * median_diameter(tiny[0]))
    cfg.train.object_diameter = 25.0  # an exact size overrides both
    assert training_diameter(cfg, small, ["a"] * 3) == 25.0
    cfg.train.rescale = False
    assert training_diameter(cfg, small, ["a"] * 3) == 0.0


def test_the_scored_network_is_a_moving_average_that_a_resume_continues():
    images, labels = _discs(4, 5)
    settings = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, crop_size=64, lr=3e-3)
    settings.workers, settings.augment, settings.ema = 0, AugmentConfig(enabled=False), 0.9
    train, val = (images[:2], labels[:2], ["g"] * 2), (images[2:], labels[2:])

    def run(model: torch.nn.Module, state=None, on_epoch=None):
        return train_seg(model, train, val, settings, torch.device("cpu"), CARD, on_epoch, state)

    class Killed(Exception):
        pass

    def kill_after_first(result, state, scored):
        kept.append(state)
        raise Killed

    torch.manual_seed(0)
    straight, seen = build_model(**CARD.arch), []
    done = run(straight, on_epoch=lambda r, s, scored: seen.append(scored))
    assert seen[-1] is not straight and done.ema is not None
    raw, averaged = straight.state_dict(), seen[-1].state_dict()
    key = "segmentation_head.0.weight"
    assert not torch.equal(raw[key], averaged[key])  # the average lags the raw weights
    torch.manual_seed(0)
    resumed, kept = build_model(**CARD.arch), []
    with pytest.raises(Killed):
        run(resumed, on_epoch=kill_after_first)
    again = run(resumed, state=kept[0])
    for key, value in averaged.items():
        torch.testing.assert_close(again.ema[key], value, msg=key)


def test_early_stopping_does_not_count_the_epochs_before_the_learning_rate_peaks():
    images, labels = _discs(4, 4)
    # the network never changes (a learning rate of almost 0, BatchNorm statistics frozen, the
    # raw weights scored), so the first epoch's score is never beaten
    settings = TrainConfig(epochs=10, steps_per_epoch=1, batch_size=2, crop_size=64, lr=1e-12)
    settings.workers, settings.augment, settings.patience = 0, AugmentConfig(enabled=False), 2
    settings.ema = 0.0
    model = build_model(**CARD.arch)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = 0.0
    state = train_seg(
        model,
        (images[:2], labels[:2], ["g"] * 2),
        (images[2:], labels[2:]),
        settings,
        torch.device("cpu"),
        CARD,
    )
    # the rate peaks in epoch 3 (30% of 10): epochs 4 and 5 without improvement stop it
    assert [e.improved for e in state.history] == [True] + [False] * 4
