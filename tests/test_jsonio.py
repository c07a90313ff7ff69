import pytest

from pipeline.errors import DataError
from pipeline.jsonio import read_json, write_json


def test_a_document_round_trips_and_the_write_is_whole(tmp_path):
    path = write_json(tmp_path / "a" / "doc.json", {"b": [1, 2.5], "a": "x"})
    assert read_json(path, "doc", "fix") == {"a": "x", "b": [1, 2.5]}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]  # no temporary left


@pytest.mark.parametrize("content", [None, "{cut", "\xff\xfe"])
def test_an_unreadable_document_names_the_file_what_it_is_and_the_fix(tmp_path, content):
    path = tmp_path / "state.json"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError, match=r"state\.json: unreadable stage state \(.*\); re-run it"):
        read_json(path, "stage state", "re-run it")
