"""Logging and progress bars for stages: log lines go to the rule's log file and to stderr."""
from __future__ import annotations

import contextlib
import logging
import sys
import time

from tqdm import tqdm

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def stage_logging(log_path=None, level=logging.INFO):
    """Send log records to `log_path` (if given) and stderr for the duration of a stage."""
    root = logging.getLogger()
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
        root.addHandler(h)
    old_level = root.level
    root.setLevel(level)
    start = time.perf_counter()
    try:
        yield
        logging.getLogger("pipeline").info("done in %.1f s", time.perf_counter() - start)
    except BaseException:
        logging.getLogger("pipeline").exception("stage failed")
        raise
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)


def progress(iterable=None, *, total=None, desc=None, unit="it"):
    """A progress bar on stderr; redrawn at most every 10 s when stderr is not a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.2 if interactive else 10.0, leave=interactive)
