import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config.sections import NORMALISATIONS
from pipeline.errors import DataError
from pipeline.ingest.dataset import ingest
from pipeline.preprocess.prepare import preprocess
from pipeline.preprocess.samples import NORMALISERS, load_split, normalise, views
from pipeline.rundir import RunDir


def test_normalise_percentiles():
    img = np.arange(100, dtype=np.uint16).reshape(1, 10, 10)
    out = normalise(img, 0, 100)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        normalise(img[0], 1, 99)


@pytest.mark.parametrize(
    ("dtype", "low", "high", "n"),
    [
        ("uint8", 0, 255, 1),
        ("uint8", 7, 7, 50),
        ("uint16", 100, 4100, 1001),
        ("int16", -900, 300, 99),
    ]
    + [("int32", -5, 70000, 2000), ("uint32", 3_000_000_000, 3_000_000_300, 77)]
    + [("uint64", 0, 1000, 64), ("int64", -(2**40), -(2**40) + 1000, 64)],
)
def test_integer_channels_are_counted_into_numpys_percentile_stretch(dtype, low, high, n):
    """Integer channels take a histogram and a lookup table: the same float32 numbers as
    NumPy's percentiles and stretch of the float32 pixels (large uint32 values round alike)."""
    ch = np.random.default_rng(n).integers(low, high + 1, (1, n)).astype(dtype)
    pixels = ch.astype(np.float32)
    for q in ((1.0, 99.8), (0.0, 100.0), (50.0, 50.0), (33.3, 66.7)):
        lo, hi = np.percentile(pixels, q)
        want = np.clip((pixels - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
        np.testing.assert_array_equal(normalise(ch[None], *q)[0], want)


def test_counting_stays_exact_past_float32_counts_and_on_strided_channels():
    """8- and 16-bit channels are counted by OpenCV's float32 histogram below 2**24 pixels:
    with one intensity on 2**24 + 1 pixels (one more than float32 counts exactly), a strided
    view of a 16-bit channel and a big-endian one (a 16-bit PNG's, which OpenCV would misread),
    the stretch is still NumPy's."""
    big = np.zeros((1, 2**24 + 2), np.uint8)
    big[0, -1] = 255
    strided = np.random.default_rng(3).integers(0, 4000, (40, 60)).astype(np.uint16)[::3, 1::2]
    for ch in (big, strided, strided.astype(">u2")):
        pixels = ch.astype(np.float32)
        for q in ((0.0, 100.0), (1.0, 99.8)):
            lo, hi = np.percentile(pixels, q)
            want = np.clip((pixels - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
            np.testing.assert_array_equal(normalise(ch[None], *q)[0], want)


@pytest.mark.parametrize("method", sorted(NORMALISERS))
def test_every_normalisation_keeps_order_per_channel_in_the_unit_range(method):
    rng = np.random.default_rng(0)
    img = np.stack([rng.integers(0, 4000, (12, 10)), rng.integers(0, 40, (12, 10))])
    out = normalise(img.astype(np.uint16), 1, 99, method)
    assert out.shape == (2 * views(method), 12, 10) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and out[0].max() > out[0].min()
    # each view of each channel: from that channel alone, a brighter pixel never mapped lower
    for v, single in enumerate(NORMALISERS[method]):
        name = [k for k, fns in NORMALISERS.items() if fns == (single,)][0]
        for c, ch in enumerate(img):
            norm = out[2 * v + c]
            np.testing.assert_array_equal(norm, normalise(img[c : c + 1], 1, 99, name)[0])
            order = np.argsort(ch.ravel(), kind="stable")
            assert (np.diff(norm.ravel()[order]) >= 0).all()
    valid = "valid: percentile, rank, percentile_rank"
    with pytest.raises(ValueError, match=f"unknown normalisation 'zscore'; {valid}"):
        normalise(img, 1, 99, "zscore")
    assert tuple(NORMALISERS) == NORMALISATIONS  # the config's choices are the registry's names


def test_rank_normalisation_is_blind_to_a_display_lookup():
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 4000, (1, 40, 50)).astype(np.uint16) + 100  # a camera offset of 100
    x = (raw - 100.0) / 3999
    exported = np.round(65535 * x**0.5).astype(np.uint16)  # gamma 0.5, no two levels merged
    rank = normalise(raw, 1, 99.8, "rank")
    np.testing.assert_array_equal(rank, normalise(exported, 1, 99.8, "rank"))
    np.testing.assert_array_equal(rank, normalise(raw.astype(np.float32), 1, 99.8, "rank"))
    pct = normalise(raw, 1, 99.8), normalise(exported, 1, 99.8)
    assert np.abs(pct[0] - pct[1]).max() > 0.15  # what percentile normalisation does instead
    ties = normalise(np.array([[[5, 5, 9, 9]]]), 0, 100, "rank")  # equal pixels: their mid-rank
    np.testing.assert_array_equal(ties, [[[0.25, 0.25, 0.75, 0.75]]])


def test_preprocess_normalises_as_configured(tiny_cfg, tmp_path):
    tiny_cfg.preprocess.normalisation = "rank"
    prepared = preprocess(ingest(tiny_cfg).uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)
    s = load_split(prepared.uri, "test")[0]
    np.testing.assert_array_equal(s.image, normalise(s.raw, 1, 99, "rank"))


def test_preprocess_splits_by_field(tiny_cfg, tmp_path):
    ref = ingest(tiny_cfg)
    prepared = preprocess(ref.uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)
    assert prepared.channels == ["c1", "c5"] and prepared.dataset_id == ref.dataset_id
    index = json.loads((tmp_path / "run" / "preprocess" / "index.json").read_text())
    ids = [e["field_id"] for e in index]
    assert len(ids) == len(set(ids)) == ref.n_fields  # every field exactly once
    assert {"train", "val", "test", "unlabelled"} <= {e["split"] for e in index}
    test = load_split(prepared.uri, "test")
    s = test[0]
    assert s.image.shape == (2, 128, 160) and s.image.dtype == np.float32
    assert 0 <= s.image.min() and s.image.max() <= 1
    assert s.raw.dtype == np.uint8 and s.labels["cells"].dtype == np.int32
    assert s.labels["cells"].max() >= 1
    assert all(not u.labels for u in load_split(prepared.uri, "unlabelled"))


def test_unknown_channel_is_rejected(tiny_cfg, tmp_path):
    ref = ingest(tiny_cfg)
    tiny_cfg.data.channels = ["c9"]
    with pytest.raises(DataError, match=r"data.channels \['c9'\]"):
        preprocess(ref.uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("index.json", b'[{"field_id": "a", "spl'),
        ("source.json", b"{not json"),
        ("source.json", b'{"channels": ["c1"]}'),
        ("npz", b"PK\x03\x04 cut short"),
    ],
)
def test_a_damaged_prepared_folder_names_the_file_and_the_fix(tiny_cfg, tmp_path, name, damage):
    from pipeline.evaluate.reference import load_reference

    prepared = preprocess(ingest(tiny_cfg).uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)
    root = Path(prepared.uri)
    if name == "npz":
        index = json.loads((root / "index.json").read_text())
        path = root / next(e["file"] for e in index if e["split"] == "test")
    else:
        path = root / name
    path.write_bytes(damage)
    with pytest.raises(DataError, match=rf"{path.name}.*re-run `cellseg preprocess`"):
        load_reference(root, tiny_cfg, "test")
    assert path.read_bytes() == damage  # left as found, for the user to look at


def test_a_prepared_folder_without_its_source_falls_back(tiny_cfg, tmp_path):
    from pipeline.preprocess.samples import prepared_dataset_id

    ref = ingest(tiny_cfg)
    prepared = preprocess(ref.uri, tiny_cfg, RunDir(tmp_path / "run").preprocess)
    assert prepared_dataset_id(prepared.uri) == ref.dataset_id
    (Path(prepared.uri) / "source.json").unlink()  # written before 2026-12-07, or by hand
    assert prepared_dataset_id(prepared.uri, "older") == "older"
