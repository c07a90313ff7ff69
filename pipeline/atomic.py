"""Atomic writes: a file or folder appears complete or not at all, a crashed writer's
temporaries are recognised and removed, and a folder swapped half-way is put back."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import ConfigError, DataError

TEMPORARIES = ".atomic"  # each folder's writes in progress, apart: listing them stays cheap


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path for `final`; move it into place only if the block succeeds.

    Works for files and folders. A file is replaced in one rename, so readers see the old or the
    new content, never a half-written one. A folder is swapped in two renames: a crash between
    them leaves the previous version aside in this call's temporary folder, and the next
    `atomic_path` on the same path puts it back before doing anything else. Temporaries live in
    the folder's TEMPORARIES subfolder (removed when empty), named after `final` and the
    writer's pid, so a write costs the same in a folder of a million files (listing that folder
    on each write took 22-48 ms at 30,000) and a killed writer's are recognised and removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _restore_previous(final)
    remove_temporaries(final)
    tmp = _new_temporary(final)
    target = tmp / final.name
    try:
        yield target
        if final.is_dir() and target.is_dir():
            final.rename(tmp / "previous")
            target.rename(final)
        else:
            os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):  # another write's are still in it
            tmp.parent.rmdir()


def _temporaries(final: Path) -> Iterator[tuple[Path, str]]:
    """`final`'s temporaries, each with the pid of the process that made it (as text)."""
    folder = final.parent / TEMPORARIES
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:  # none, or another write removed the emptied folder just then
        return
    prefix = f"{final.name}."
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid, _, rest = name[len(prefix) : -len(".tmp")].partition(".")
        if rest and "." not in rest:  # not a longer name's: "<name>.<pid>.<random>.tmp"
            yield folder / name, pid


def _new_temporary(final: Path) -> Path:
    prefix = f"{final.name}.{os.getpid()}."  # the owner's pid: orphans are recognised
    for _ in range(100):  # other writes in the folder may remove it, emptied, at any moment
        with contextlib.suppress(FileExistsError):  # pathlib's exist_ok raises if it went
            (final.parent / TEMPORARIES).mkdir()
        try:
            return Path(tempfile.mkdtemp(prefix, ".tmp", final.parent / TEMPORARIES))
        except FileNotFoundError:  # removed between the two calls: make it again
            continue
    raise OSError(f"{final.parent / TEMPORARIES}: cannot create a temporary for {final.name}")


def _restore_previous(final: Path) -> None:
    """Put back a folder version left aside by a crash in the middle of a folder swap (a dead
    writer's: a live one is between its two renames, and puts its new version there itself)."""
    if final.exists():
        return
    for tmp, pid in _temporaries(final):
        if pid.isdigit() and _alive(int(pid)):
            continue
        if (tmp / "previous").exists():
            (tmp / "previous").rename(final)
            return


def remove_temporaries(final: Path, dead_only: bool = True) -> None:
    """Delete `final`'s temporaries left by processes that died (killed while writing), or, with
    `dead_only` False, all of them (a resumed training's: no one else writes its checkpoint)."""
    for tmp, pid in _temporaries(final):
        if not dead_only or (pid.isdigit() and not _alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        (final.parent / TEMPORARIES).rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def public_dir(path: Path) -> Path:
    """Give a folder made by ``mkdtemp`` (0700) the user's default permissions (umask), so
    another user (a model server) can read what is published from it."""
    path.chmod(0o777 & ~_umask())
    return path


def public_file(path: Path) -> Path:
    """Give a file its writer made private (0600: safetensors' ``save_file``) the permissions a
    new file gets by default (0666 less the umask), as `public_dir` does for folders."""
    path.chmod(0o666 & ~_umask())
    return path


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to read it back (the only
    portable way) leaves it 0 for an instant in which another thread's new files are writable
    by anyone."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/self/status") as status:
            return int(next(x for x in status if x.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def disk_full_is_data_error(message: str) -> Iterator[None]:
    """Turn "no space left" inside the block into DataError(`message`): ENOSPC / EDQUOT, and
    the stream errors C++ writers (torch.save's PytorchStreamWriter) raise instead."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(message) from exc
        raise
    except RuntimeError as exc:
        text = str(exc).lower()
        if "iostream" in text or "failed writing" in text or "unexpected pos" in text:
            raise DataError(f"{message} ({str(exc).splitlines()[0][:120]})") from exc
        raise


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename a complete temporary folder to its content-addressed name `final`. Folders only
    appear at `final` by this rename, so if a concurrent run got there first, its folder is
    complete and identical: keep it (the caller removes `tmp`)."""
    try:
        public_dir(tmp).rename(final)
    except OSError:
        if not final.is_dir():
            raise


def require_empty_folder(out: str | Path) -> None:
    """ConfigError unless `out` is a new or empty folder: what is there is never overwritten."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} is not a new or empty folder; pass one")
