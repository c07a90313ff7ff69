"""The local registry store: exclusive, complete writes that another user can read."""

from __future__ import annotations

import os

from pipeline.registry.store import LocalStore


def test_a_local_put_is_exclusive_and_readable_as_the_umask_allows(tmp_path):
    store = LocalStore(tmp_path / "registry")
    old = os.umask(0o022)
    try:
        assert store.put_new("m/v0001/weights.safetensors", b"first")
        assert not store.put_new("m/v0001/weights.safetensors", b"second")  # never overwritten
    finally:
        os.umask(old)
    written = tmp_path / "registry" / "m" / "v0001" / "weights.safetensors"
    assert written.read_bytes() == b"first" and written.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in written.parent.iterdir()] == ["weights.safetensors"]  # no temporaries
