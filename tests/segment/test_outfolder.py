import json
import os
import time

import pytest

from pipeline.segment.outfolder import DONE, STALE_CLAIM_S, claim, record_done


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(b"pixels")
    return path


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_an_image_is_claimed_once_until_its_claim_goes_stale(tmp_path, image):
    out = tmp_path / "out"
    assert claim(out, "d1", image)
    assert not claim(out, "d1", image)  # another worker holds it
    entry = out / DONE / "d1.json"
    assert json.loads(entry.read_text())["image"] == "a.tif"
    _age(entry, STALE_CLAIM_S + 1)  # its run died
    assert claim(out, "d1", image)


def test_a_segmented_image_is_never_claimed_again(tmp_path, image):
    out = tmp_path / "out"
    assert claim(out, "d1", image)
    record_done(out, "d1", {"image": "a.tif", "segmented_at": "2026-12-07T16:00:00Z"})
    _age(out / DONE / "d1.json", 10 * STALE_CLAIM_S)
    assert not claim(out, "d1", image)


@pytest.mark.parametrize("text", ["", '{"image": "a.t'])
def test_a_claim_cut_short_is_a_claim(tmp_path, image, text):
    out = tmp_path / "out"
    (out / DONE).mkdir(parents=True)
    entry = out / DONE / "d1.json"
    entry.write_text(text)  # being written, or cut short by a full disk
    assert not claim(out, "d1", image)
    _age(entry, STALE_CLAIM_S + 1)
    assert claim(out, "d1", image)
    assert json.loads(entry.read_text())["image"] == "a.tif"
