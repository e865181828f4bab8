"""Write files atomically: into a temporary name beside the target, renamed when complete.

A job killed mid-write leaves the old file or no file, never a half-written one.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


class AtomicFile:
    """A temporary path beside `path`: `commit()` renames it into place, `discard()` removes it."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def commit(self) -> None:
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write to; it replaces `path` when the block ends without error."""
    target = AtomicFile(path)
    try:
        yield target.tmp
        target.commit()
    finally:
        target.discard()


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
