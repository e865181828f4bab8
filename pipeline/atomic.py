"""Write files atomically: into a temporary name beside the target, renamed when complete.

A job killed mid-write leaves the old file or no file, never a half-written one; what it
leaves is its temporary `.<name>.tmp<pid>`, which the next write of the same file removes
(when no live process has that pid; once per process and folder), as does `python -m pipeline status --clean`.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def leftover(path: Path) -> bool:
    """Whether `path` is a temporary file of an atomic write whose process is gone."""
    m = _TMP.match(path.name)
    return bool(m) and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"]))


def remove_leftovers(root) -> list[Path]:
    """Remove the temporaries of killed writers under `root`; returns what was removed."""
    removed = []
    for path in sorted(Path(root).rglob(".*.tmp*")):
        if path.is_file() and leftover(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


_CLEANED: set[Path] = set()


def _clean_once(folder: Path) -> None:
    """Remove killed writers' temporaries in `folder`, once per process and folder: a stage writes
    many files into one folder (PNGs per shard), and listing it before each would cost n^2."""
    if folder not in _CLEANED:
        _CLEANED.add(folder)
        for old in folder.glob(".*.tmp*"):
            if old.is_file() and leftover(old):
                old.unlink(missing_ok=True)


class AtomicFile:
    """A temporary path beside `path`: `commit()` renames it into place, `discard()` removes it."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        _clean_once(self.path.parent)

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
