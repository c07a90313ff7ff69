"""Every bad input a clear message (exit 2, one line naming the input and the fix), nothing lost:
the cases of the hostile-input campaign, then randomly corrupted TIFs and archives."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from pipeline.atomic import atomic_path, disk_full_is_data_error
from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.jsonio import write_json
from tests.archive_server import ArchiveServer


def _folder(root: Path, n: int = 4) -> Path:
    """A small plain-folder dataset: images/<stem>.tif and masks/<stem>.tif."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        tifffile.imwrite(root / "images" / f"f{i}.tif", rng.integers(0, 255, (48, 64), np.uint8))
        mask = np.zeros((48, 64), np.uint16)
        mask[5:15, 5:15], mask[25:40, 30:50] = 1, 2
        tifffile.imwrite(root / "masks" / f"f{i}.tif", mask)
    return root


def _hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _cli(capsys, tmp_path, *argv: str, source: Path | str | None = None) -> tuple[int, str]:
    home = [
        "--set",
        f"paths.data_dir={tmp_path / 'data'}",
        "--set",
        f"paths.runs_dir={tmp_path}/runs",
    ]
    src = ["--layout", "folder", "--target", "nuclei", "--source", str(source)] if source else []
    code = main([*argv, *src, *home])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, err


def _one_line(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellseg: error:"), lines
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_a_zip_bomb_is_refused_before_extraction_and_leaves_nothing(capsys, tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/f0.tif", b"\0" * 30_000_000)  # 30 MB of zeros: ~1000x
    before = _hashes(bomb)
    code, err = _cli(
        capsys, tmp_path, "ingest", "--set", "data.max_expansion_ratio=100", source=bomb
    )
    _one_line(code, err, str(bomb), "data.max_expansion_ratio=100", "zip bomb")
    assert _hashes(bomb) == before
    extracted = tmp_path / "data" / "raw" / "extracted"
    assert not extracted.exists() or not any(extracted.rglob("*"))
    code, err = _cli(capsys, tmp_path, "ingest", "--set", "data.max_extract_gb=0.01", source=bomb)
    _one_line(code, err, str(bomb), "data.max_extract_gb")


def test_a_zip_with_a_flipped_byte_names_the_entry(capsys, tmp_path):
    archive = tmp_path / "set.zip"
    root = _folder(tmp_path / "set")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*.tif")):
            zf.write(p, p.relative_to(tmp_path))
    data = bytearray(archive.read_bytes())
    data[200] ^= 0xFF  # inside the first entry's compressed data
    archive.write_bytes(bytes(data))
    code, err = _cli(capsys, tmp_path, "ingest", source=archive)
    _one_line(code, err, str(archive), "delete the archive and download it again")
    extracted = tmp_path / "data" / "raw" / "extracted"
    assert not extracted.exists() or not any(extracted.rglob("*.tif"))


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (np.nan, "1 NaN or infinite pixel(s)"),
        (np.inf, "1 NaN or infinite pixel(s)"),
        (None, "not a readable TIF"),  # a valid header, garbage after it
    ],
)
def test_bad_images_name_the_file(capsys, tmp_path, pixels, expected):
    root = _folder(tmp_path / "set")
    bad = root / "images" / "f1.tif"
    if pixels is None:
        data = bad.read_bytes()
        bad.write_bytes(data[:16] + os.urandom(len(data) - 16))
    else:
        image = np.random.default_rng(1).random((48, 64)).astype(np.float32)
        image[3, 4] = pixels
        tifffile.imwrite(bad, image)
    before = _hashes(root)
    code, err = _cli(capsys, tmp_path, "ingest", source=root)
    _one_line(code, err, str(bad), expected)
    assert _hashes(root) == before


def test_other_files_in_an_images_folder_are_listed_as_skipped(capsys, tmp_path):
    import json

    root = _folder(tmp_path / "set")
    (root / "images" / "notes.txt").write_text("lab notes")
    (root / "images" / "preview.svg").write_text("<svg/>")
    code, _ = _cli(capsys, tmp_path, "ingest", "--run-id", "r", source=root)
    assert code == 0
    version = next((tmp_path / "data" / "datasets").iterdir())
    skipped = json.loads((version / "dataset.json").read_text())["skipped_files"]
    assert sorted(s.split(":")[0].rsplit("/", 1)[-1] for s in skipped) == [
        "notes.txt",
        "preview.svg",
    ]
    mask = os.umask(0)
    os.umask(mask)
    # a dataset version is readable as the umask allows (not 0700): a model server can read it
    assert version.stat().st_mode & 0o777 == 0o777 & ~mask


def test_a_corrupt_png_image_stops_naming_it_and_loses_nothing(capsys, tmp_path):
    root = _folder(tmp_path / "set")
    bad = root / "images" / "preview.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")  # a PNG's signature and nothing else
    before = _hashes(root)
    code, err = _cli(capsys, tmp_path, "ingest", source=root)
    _one_line(code, err, str(bad), "not a readable image", "re-export or remove the file")
    assert _hashes(root) == before


def test_a_mistyped_url_says_404(capsys, tmp_path):
    server = ArchiveServer()
    try:
        url = f"{server.url}/pub/typo"
        code, err = _cli(
            capsys,
            tmp_path,
            "ingest",
            "--set",
            "data.archives=BBBC020_v1_images.zp",
            "--layout",
            "bbbc020",
            "--source",
            url,
        )
        _one_line(code, err, "BBBC020_v1_images.zp: HTTP 404")
    finally:
        server.close()


def test_a_corrupt_run_state_and_an_out_file_name_themselves(capsys, tmp_path):
    state = tmp_path / "runs" / "r" / "state" / "ingest.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    code, err = _cli(capsys, tmp_path, "validate", "--run-id", "r")
    _one_line(code, err, str(state), "unreadable stage state")
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for argv in (
        ["predict", "--images", str(tmp_path), "--out", str(afile)],
        ["validate", "--dataset", str(tmp_path), "--out", str(afile)],
        ["models", "download", "production", "--out", str(afile)],
    ):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        _one_line(code, err, f"--out {afile} is an existing file")
    assert afile.read_text() == "keep me"


def test_temporaries_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    final = tmp_path / "checkpoint.pt"
    orphan = tmp_path / ".atomic" / f"checkpoint.pt.{dead.stdout.strip()}.abc123.tmp"
    orphan.mkdir(parents=True)
    (orphan / "checkpoint.pt").write_bytes(b"\0" * 1_000_000)  # a half-written checkpoint
    mine = tmp_path / ".atomic" / f"checkpoint.pt.{os.getpid()}.xyz.tmp"  # a live writer's: kept
    mine.mkdir()
    longer = tmp_path / ".atomic" / f"checkpoint.pt.{dead.stdout.strip()}.a.b.tmp"  # not ours
    longer.mkdir()
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new" and not orphan.exists() and mine.exists()
    assert longer.exists()  # "checkpoint.pt.<pid>.a.b.tmp" would be a longer name's
    write_json(tmp_path / "other.json", {})  # other names' temporaries are not touched
    assert mine.exists()


def test_a_full_disk_while_saving_a_checkpoint_says_so():
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    with pytest.raises(DataError, match="disk full while saving"):
        with disk_full_is_data_error("runs/r/train: disk full while saving the checkpoint"):
            torch.save({"w": torch.zeros(1_000_000)}, "/dev/full")


CORRUPTIONS = ("truncate", "flip", "float_nan", "wrong_rank", "empty", "zip_truncate", "zip_flip")


@pytest.mark.parametrize("seed", range(14))
def test_randomly_corrupted_inputs_exit_2_naming_a_file_or_succeed(capsys, tmp_path, seed):
    """Property-style: a random corruption of one TIF or of the archive; ingest then validate
    either succeed or stop with exit 2 and one line naming a file; never a traceback; the
    input is never changed."""
    rng = np.random.default_rng(seed)
    kind = CORRUPTIONS[seed % len(CORRUPTIONS)]
    root = _folder(tmp_path / "set")
    victim = root / rng.choice(["images", "masks"]) / f"f{rng.integers(0, 4)}.tif"
    data = bytearray(victim.read_bytes())
    source: Path = root
    if kind == "truncate":
        victim.write_bytes(bytes(data[: int(rng.integers(0, len(data)))]))
    elif kind == "flip":
        for i in rng.integers(0, len(data), size=8):
            data[i] ^= int(rng.integers(1, 256))
        victim.write_bytes(bytes(data))
    elif kind == "float_nan":
        image = rng.random((48, 64))
        image[rng.integers(0, 48), rng.integers(0, 64)] = np.nan
        tifffile.imwrite(victim, image)
    elif kind == "wrong_rank":
        tifffile.imwrite(victim, rng.integers(0, 9, (2, 3, 48, 64), np.uint8))
    elif kind == "empty":
        victim.write_bytes(b"")
    else:
        source = tmp_path / "set.zip"
        with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(root.rglob("*.tif")):
                zf.write(p, p.relative_to(tmp_path))
        packed = bytearray(source.read_bytes())
        if kind == "zip_truncate":
            packed = packed[: int(rng.integers(10, len(packed)))]
        else:
            for i in rng.integers(0, len(packed), size=4):
                packed[i] ^= int(rng.integers(1, 256))
        source.write_bytes(bytes(packed))
    before = _hashes(source)
    code, err = _cli(capsys, tmp_path, "ingest", "--run-id", "r", source=source)
    if code == 0:
        code, err = _cli(capsys, tmp_path, "validate", "--run-id", "r")
        assert code in (0, 2), err
        if code == 2:  # a failed data check: one expectation per line, naming fields
            assert err.startswith("cellseg: error:"), err
    else:
        _one_line(code, err)
        assert str(source) in err or str(root) in err, err  # names the input
    assert _hashes(source) == before


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("data.download_timeout_s=0", "data.download_timeout_s=0.0 must be > 0"),
        ("train.lr=.nan", "train.lr"),
        ("train.lr=.inf", "train.lr"),
        ("train.weight_decay=-1", "train.weight_decay=-1.0 must be >= 0"),
        ("data.max_expansion_ratio=0", "data.max_expansion_ratio=0.0 must be > 0"),
    ],
)
def test_bad_config_values_name_the_key(capsys, tmp_path, setting, expected):
    code, err = _cli(capsys, tmp_path, "ingest", "--set", setting)
    _one_line(code, err, expected)


def test_numbers_written_as_users_write_them_are_accepted(tmp_path):
    from pipeline.config import load_config

    cfg = load_config(None, {"train.lr": "1e-3", "train.weight_decay": "0"})
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.weight_decay == 0


def test_registry_files_are_readable_by_another_user(tmp_path):
    from pipeline.config import RegistryConfig
    from pipeline.registry.versions import Registry
    from pipeline.segment.artifact import save_model
    from pipeline.segment.card import ModelCard
    from pipeline.segment.network import build_model
    from tests.registry.conftest import register

    card = ModelCard("resnet18", 1, ["foreground", "distance"], ["a"], "nuclei", "a", 1, 99)
    save_model(build_model(**card.arch), card, tmp_path / "model")
    reg = Registry(RegistryConfig(uri=str(tmp_path / "registry")))
    register(reg, tmp_path / "model")
    mask = os.umask(0)
    os.umask(mask)
    for path in (tmp_path / "registry").rglob("*"):
        wanted = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == wanted, path
