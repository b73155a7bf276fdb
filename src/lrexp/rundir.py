"""A run's directory: claimed by one run, and what it leaves there (.hydra/, the log,
metrics.json, figures/, the closing summary).

Every file is written atomically — to a temporary file in the same folder, then renamed — so an
interrupted run never leaves a half-written file that looks complete; and nothing is written
before every input is checked, so a failed run never touches an earlier run's files.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from lrexp.checkpoints import CHECKPOINT_DIR
from lrexp.errors import LrexpError

if TYPE_CHECKING:
    import lightning as L
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.json"
RUN_LOG_HANDLER = "lrexp-run-log"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a new file beside `path`, fsync it and rename it over `path`: the path
    holds the old or the new bytes, never part of them. The file gets the mode open() gives
    (0666 less the umask), since the kernel applies the umask to os.open's mode itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    path = run_dir / METRICS_FILE
    write_atomic(path, (json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n").encode())
    return path


def save_figures(run_dir: Path, figures: Mapping[str, Figure], loggers: list[Any]) -> None:
    """figures/<name>.png, and that same picture as a TensorBoard image (drawn once, not
    again by TensorBoard's add_figure)."""
    import io

    from matplotlib.image import imread

    tensorboards = [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        write_atomic(run_dir / "figures" / f"{name}.png", buffer.getvalue())
        if tensorboards:
            buffer.seek(0)
            pixels = imread(buffer, format="png")
            for writer in tensorboards:
                writer.add_image(f"figures/{name}", pixels, dataformats="HWC")


def start_run(run_dir: Path, cfg: DictConfig, continuing: bool) -> None:
    """Claim run_dir for this run, then write .hydra/ and open the log file there.

    Called once every input is checked, so a run that fails on a bad input leaves no trace in
    an earlier run's dir. A new run claims the dir by creating .hydra/ — mkdir is atomic, so of
    two runs that meet in one dir only one gets it — and refuses a dir that holds a run. A run
    that continues the dir's own run writes .hydra/ when it finishes (save_run_config).
    """
    if not continuing:
        _claim(run_dir)
        save_run_config(run_dir, cfg)
    _log_to_file(run_dir)


def _claim(run_dir: Path) -> None:
    earlier = [p.name for p in (run_dir / METRICS_FILE, run_dir / CHECKPOINT_DIR) if p.exists()]
    if not earlier:
        try:
            (run_dir / ".hydra").mkdir(parents=True)
            return
        except FileExistsError:
            earlier = [".hydra"]
    raise LrexpError(
        f"hydra.run.dir={run_dir} already holds a run ({earlier[0]}): resume it with "
        "ckpt_path=last, or choose another hydra.run.dir"
    )


def save_run_config(run_dir: Path, cfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them, atomically."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    files = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    for name, node in files.items():
        write_atomic(run_dir / ".hydra" / name, OmegaConf.to_yaml(node).encode())


def _log_to_file(run_dir: Path) -> None:
    """<job name>.log in the run dir, in the console's format (Hydra's file log, opened late;
    close_run_log detaches it)."""
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handler = logging.FileHandler(run_dir / f"{HydraConfig.get().job.name}.log")
    handler.set_name(RUN_LOG_HANDLER)
    if root.handlers:
        handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)


def close_run_log() -> None:
    """Detach and close the run's log file (after the task, whatever its end)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == RUN_LOG_HANDLER]:
        root.removeHandler(handler)
        handler.close()


def print_summary(title: str, metrics: Mapping[str, float], lines: Mapping[str, str]) -> None:
    """A short table of the final metrics and where the run's files are (paths and commands
    unwrapped and unstyled, so they can be copied from any terminal width)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if metrics:
        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in sorted(metrics):
            table.add_row(key, f"{metrics[key]:.4f}")
        console.print(table)
    for label, value in lines.items():
        console.print(f"[bold]{label}[/bold] {escape(value)}", soft_wrap=True)


def finish(
    title: str,
    run_dir: Path,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    metrics: Mapping[str, float],
    lines: Mapping[str, str],
    cfg: DictConfig | None = None,
    best_checkpoint: str | None = None,
) -> Path | None:
    """What every run leaves (rank 0): figures/ and their TensorBoard images, metrics.json, the
    config as hyper-parameters (when `cfg` is given; TensorBoard's HPARAMS tab gets the metrics
    as hp/...), the run's files on a tracking server (lrexp.tracking), the loggers closed, and
    the closing summary. Returns metrics.json's path."""
    from lrexp import plots
    from lrexp.coefficients import COEFFICIENTS_FILE, coefficients_csv, table_rows
    from lrexp.tracking import close_tracking, log_artifacts, tracking_lines

    if not trainer.is_global_zero:
        return None
    rows = None
    if hasattr(datamodule, "feature_names"):  # a table: its coefficients by name, with inference
        rows, statistics = table_rows(model, datamodule)
        metrics = {**metrics, **statistics}
        write_atomic(run_dir / COEFFICIENTS_FILE, coefficients_csv(rows))
    save_figures(run_dir, plots.run_figures(model, datamodule, rows), trainer.loggers)
    path = write_metrics(run_dir, metrics)
    for logger in trainer.loggers:
        if cfg is not None:
            params = OmegaConf.to_container(cfg, resolve=True)
            if isinstance(logger, TensorBoardLogger):  # the HPARAMS tab's columns
                logger.log_hyperparams(params, {f"hp/{k}": v for k, v in metrics.items()})
            else:
                logger.log_hyperparams(params)
    log_artifacts(trainer.loggers, run_dir, best_checkpoint)
    for logger in trainer.loggers:
        logger.finalize("success")
    close_tracking(trainer.loggers)
    where = {"run dir:": str(run_dir), "metrics:": str(path)}
    if any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
        where["tensorboard:"] = f"tensorboard --logdir {run_dir}"
    print_summary(title, metrics, {**lines, **where, **tracking_lines(trainer.loggers)})
    return path
