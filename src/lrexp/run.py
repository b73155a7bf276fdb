"""What a run leaves in its directory (metrics.json, figures/, the closing summary).

Every file is written atomically — to a temporary file in the same folder, then renamed — so an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.json"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    path = run_dir / METRICS_FILE
    write_atomic(path, (json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n").encode())
    return path


def save_figures(run_dir: Path, figures: Mapping[str, Figure], loggers: list[Any]) -> None:
    """figures/<name>.png, and the same picture as a TensorBoard image."""
    import io

    import matplotlib.pyplot as plt

    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        write_atomic(run_dir / "figures" / f"{name}.png", buffer.getvalue())
        for logger in loggers:
            if hasattr(logger.experiment, "add_figure"):
                logger.experiment.add_figure(f"figures/{name}", figure, close=False)
        plt.close(figure)


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` → this run dir's checkpoints/last.ckpt; a path must name an existing file."""
    if ckpt_path is None:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = (
            "pass hydra.run.dir=<the run's dir> with ckpt_path=last"
            if ckpt_path == "last"
            else "give the path of an existing .ckpt file"
        )
        raise LrexpError(f"ckpt_path={ckpt_path}: {path} does not exist; {hint}")
    return str(path)


def check_fresh(run_dir: Path, resuming: bool) -> None:
    """A new run must not write over an earlier run's results in the same directory."""
    if resuming:
        return
    earlier = [p for p in (run_dir / METRICS_FILE, run_dir / "checkpoints") if p.exists()]
    if earlier:
        raise LrexpError(
            f"hydra.run.dir={run_dir} already holds a run ({earlier[0].name}): resume it with "
            "ckpt_path=last, or choose another hydra.run.dir"
        )


def print_summary(title: str, metrics: Mapping[str, float], lines: Mapping[str, str]) -> None:
    """A short table of the final metrics and where the run's files are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4f}")
    console = Console()
    console.print(table)
    for label, value in lines.items():
        console.print(f"[bold]{label}[/bold] {value}")
