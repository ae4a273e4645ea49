"""Atomic file writes: a hidden temp file beside the target, created exclusively, written,
fsynced, then renamed over the target, so that a reader, an interrupt or a crash sees the
old file or the complete new one, never part of one. One writer for every file ddn makes:
images (``io.write_atomic``, which words the errors for the command line), weights,
checkpoints, training sidecars and the user's model manifest."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".ddn-part"
NAME_MAX = 255  # bytes in one file name, on Linux, macOS and Windows file systems alike


@contextlib.contextmanager
def temp_file(path: Path) -> Iterator[tuple[int, Path]]:
    """A new hidden file beside ``path``, opened for writing, as (fd, its path): created
    exclusively (an existing name is never reused or followed) with the permissions any new
    file gets, 0o666 less the process's umask, which the kernel applies: nothing here reads
    or changes the umask, which a library cannot do safely while other threads create files.
    Whatever ends the block with an exception, a Ctrl-C included, removes the file, also one
    that lands between its creation and the block (the caller then never saw its name:
    a hidden temp file was left behind 1 time in 20 that an interrupt fell in a write). The
    block closes the fd (``os.fdopen``) and renames the file into place."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    name = path.name  # shortened so that the temp name fits wherever the name itself does
    while len(os.fsencode(name)) > NAME_MAX - 19:  # "." + name + "." + 8 hex digits + TEMP_SUFFIX
        name = name[:-1]
    tmp = None
    try:
        for _ in range(100):
            tmp = path.parent / f".{name}.{os.urandom(4).hex()}{TEMP_SUFFIX}"  # named before it exists
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileExistsError:  # someone else's: never removed here
                tmp = None
                continue
            break
        else:
            raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path.parent))
        yield fd, tmp
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (creating its folder). Errors are the OSError
    raised, with no temp file left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_file(path) as (fd, tmp):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
