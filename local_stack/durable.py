"""Files that are whole or absent: written to a staging file, fsync'd, renamed over the old
one and the rename fsync'd, so a crash at any moment leaves the old file or the new one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`data` as `path`; the file is created with `mode` (0o600: its owner's only, from the
    first byte, never readable by others even for a moment)."""
    staging = path.with_name(path.name + ".new")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging, path)  # two writers at once: one file wins, whole
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (where the file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
