"""Figures: matplotlib without a display, written atomically (the report, SC-CAM's embedding,
`python -m pipeline show`)."""
from __future__ import annotations

from pathlib import Path

from .atomic import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: most jobs draw nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_path, dpi: int = 100) -> Path:
    """Write `fig` as PNG (the old file or the whole new one, never half of it) and close it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return out_path
