import json

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.ingest.dataset import ingest
from pipeline.preprocess.prepare import preprocess
from pipeline.preprocess.samples import load_split, normalise
from pipeline.rundir import RunDir


def test_normalise_percentiles():
    img = np.arange(100, dtype=np.uint16).reshape(1, 10, 10)
    out = normalise(img, 0, 100)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        normalise(img[0], 1, 99)


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
