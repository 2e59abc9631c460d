"""Every file the bot writes: whole or not at all, and a failure as one clear line.

A page is written to a temporary name beside it and renamed over the old one, so a reader
(a browser on the S3 mirror, the next run reading report.json) never sees half a page, and
a full disk leaves the previous file, not a 0-byte one. A write that fails (no space, no
permission, a read-only disk, a file where a folder should be) becomes an OutputError
naming the path and what to do: exit 2, with the one line the driver prints.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from _util.errors import OutputError


def output_error(path: Path, exc: OSError) -> OutputError:
    """One line for a failed write of `path`."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        todo = "free space on that disk (or set COST_TRACKING_OUTPUT_DIR to another one)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = ("let the bot's user write there, or set COST_TRACKING_OUTPUT_DIR to a "
                "folder it can write")
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        todo = "a file stands where a folder should be (or the reverse): move it"
    else:
        todo = "check COST_TRACKING_OUTPUT_DIR"
    return OutputError(f"cannot write {path} ({reason}): {todo}")


@contextmanager
def replacing(path: Path, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """A file object to write `path` through: a temporary file beside it, renamed over
    `path` when the block ends without error, removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise output_error(path, exc) from exc
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: Path, text: str) -> Path:
    """`text` as `path` (UTF-8), whole or not at all."""
    with replacing(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def check_writable(folder: Path) -> None:
    """The output folder exists (made if need be) and the bot can write in it: checked
    before anything else is written, so a mistake there is one line, not a traceback
    from deep in a stage."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise output_error(folder, exc) from exc
