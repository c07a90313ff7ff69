import json
import os
import time

import pytest

from pipeline.errors import DataError
from pipeline.segment.outfolder import (
    DONE,
    STALE_CLAIM_S,
    claim,
    read_table,
    record_done,
    update_table,
)


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


@pytest.mark.parametrize(
    "content, why",
    [
        (b"\xff\xfe\x00garbage\x00\n\x81", "UnicodeDecodeError"),
        (b"", "EmptyDataError"),
        (b'image,n_objects\n"a.tif,3\n', "ParserError"),
        (b"name,n_objects\na.tif,3\n", "no 'image' column"),
    ],
)
def test_an_unreadable_images_csv_is_named_and_left_as_it_is(tmp_path, content, why):
    (tmp_path / "images.csv").write_bytes(content)
    for call in (lambda: read_table(tmp_path), lambda: update_table(tmp_path, [{"image": "b"}])):
        with pytest.raises(DataError, match=rf"images.csv: unreadable images.csv \({why}.*aside"):
            call()
    assert (tmp_path / "images.csv").read_bytes() == content


def test_rows_of_other_images_are_kept_and_this_runs_replaced(tmp_path):
    assert read_table(tmp_path) is None
    update_table(tmp_path, [{"image": "a", "n": 1}, {"image": "b", "n": 2}])
    update_table(tmp_path, [{"image": "b", "n": 5}, {"image": "c", "n": 3}])
    table = read_table(tmp_path)
    assert table.to_dict("list") == {"image": ["a", "b", "c"], "n": [1, 5, 3]}
