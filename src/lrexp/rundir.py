"""A run's directory: claimed by one run, and what it leaves there (.hydra/, the log,
metrics.json, figures/, the closing summary).

Every file is written atomically — to a temporary file in the same folder, then renamed — so an
interrupted run never leaves a half-written file that looks complete; and nothing is written
before every input is checked, so a failed run never touches an earlier run's files.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import math
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
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
RUN_LOG_HANDLER = "lrexp-run-log"
# Lightning's loggers keep their own console handler and do not propagate to the root logger
# (when lightning is imported before logging is set up, as it is here): the run's log listens
# to them too.
NON_PROPAGATING = ("lightning.pytorch", "lightning.fabric")
# MemoryHandler's capacity only says when it tries to flush: without a target (before the
# claim) it keeps every record, so a job's early records are never dropped.
BUFFERED_RECORDS = 10_000
SUMMARY_WIDTH = 100  # the closing table's width in the log file


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


def measured(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics that are finite numbers; each one left out is logged, with why (strict JSON
    has no NaN or Infinity, and a metric that could not be measured is not reported)."""
    kept = {}
    for key, value in metrics.items():
        if math.isfinite(value):
            kept[key] = value
        else:
            log.warning(f"{METRICS_FILE} leaves out {key}: it is {value}, not a measured number")
    return kept


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    """metrics.json, strict JSON: the measured metrics (see `measured`). Returns its path."""
    text = json.dumps(measured(metrics), indent=2, sort_keys=True, allow_nan=False)
    path = run_dir / METRICS_FILE
    write_atomic(path, (text + "\n").encode())
    return path


def save_figures(run_dir: Path, figures: Mapping[str, Figure], loggers: list[Any]) -> None:
    """figures/<name>.png, and that same picture as a TensorBoard image (drawn once, not
    again by TensorBoard's add_figure)."""
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


def open_run_log() -> None:
    """Keep the job's log records from its start (Lightning logs its device lines when the
    Trainer is built, the data their splits when read: all before the run dir is claimed) until
    start_run writes them to the run's log file; a job that claims no dir drops them."""
    buffer = logging.handlers.MemoryHandler(BUFFERED_RECORDS, flushLevel=logging.CRITICAL + 1)
    _attach(buffer)


def _attach(handler: logging.Handler) -> None:
    handler.set_name(RUN_LOG_HANDLER)
    root = logging.getLogger()
    if root.handlers and handler.formatter is None:
        handler.setFormatter(root.handlers[0].formatter)  # the console's format
    root.addHandler(handler)
    for name in NON_PROPAGATING:
        logger = logging.getLogger(name)
        if not logger.propagate:
            logger.addHandler(handler)


def _run_log_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if h.get_name() == RUN_LOG_HANDLER]


def _log_to_file(run_dir: Path) -> None:
    """<job name>.log in the run dir, in the console's format (Hydra's file log, opened late),
    starting with the records kept since the job started; close_run_log detaches it."""
    from hydra.core.hydra_config import HydraConfig

    handler = logging.FileHandler(run_dir / f"{HydraConfig.get().job.name}.log")
    earlier = _detach_run_log()
    _attach(handler)
    for buffer in earlier:
        if isinstance(buffer, logging.handlers.MemoryHandler):
            buffer.setTarget(handler)
        buffer.close()  # a buffer flushes into its target as it closes


def close_run_log() -> None:
    """Detach and close the run's log (after the task, whatever its end)."""
    for handler in _detach_run_log():
        handler.close()


def _detach_run_log() -> list[logging.Handler]:
    handlers = _run_log_handlers()
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in NON_PROPAGATING)]:
        for handler in handlers:
            logger.removeHandler(handler)
    return handlers


def show(items: list[Any], soft_wrap: bool = False) -> None:
    """Print rich renderables (or markup strings) on the console, and the same as plain text into
    the run's log (only there: the console has them already)."""
    from rich.console import Console

    if not items:
        return
    text = io.StringIO()
    for console in (Console(), Console(file=text, width=SUMMARY_WIDTH, color_system=None)):
        for item in items:
            console.print(item, soft_wrap=soft_wrap)
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, text.getvalue().rstrip(), (), None)
    for handler in _run_log_handlers():
        handler.handle(record)


def print_summary(title: str, metrics: Mapping[str, float], lines: Mapping[str, str]) -> None:
    """A short table of the final metrics and where the run's files are (paths and commands
    unwrapped and unstyled, so they can be copied from any terminal width)."""
    from rich.markup import escape
    from rich.table import Table

    if metrics:
        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in sorted(metrics):
            table.add_row(key, f"{metrics[key]:.4f}")
        show([table])
    show([f"[bold]{label}[/bold] {escape(value)}" for label, value in lines.items()], True)


def finish(
    title: str,
    run_dir: Path,
    loggers: list[Any],
    figures: Mapping[str, Figure],
    files: Mapping[str, bytes],
    metrics: Mapping[str, float],
    lines: Mapping[str, str],
    cfg: DictConfig | None = None,
    best_checkpoint: str | None = None,
) -> Path:
    """What every run leaves (rank 0): figures/ and their TensorBoard images, the data's own
    files, metrics.json, the config as hyper-parameters (when `cfg` is given; TensorBoard's
    HPARAMS tab gets the metrics as hp/...), the run's files on a tracking server
    (lrexp.tracking), the loggers closed, and the closing summary. Returns metrics.json's
    path."""
    from lrexp.tracking import close_tracking, log_artifacts, tracking_lines

    save_figures(run_dir, figures, loggers)
    for name, data in files.items():
        write_atomic(run_dir / name, data)
    metrics = measured(metrics)
    path = write_metrics(run_dir, metrics)
    for logger in loggers:
        if cfg is not None:
            params = OmegaConf.to_container(cfg, resolve=True)
            if isinstance(logger, TensorBoardLogger):  # the HPARAMS tab's columns
                logger.log_hyperparams(params, {f"hp/{k}": v for k, v in metrics.items()})
            else:
                logger.log_hyperparams(params)
    log_artifacts(loggers, run_dir, best_checkpoint)
    for logger in loggers:
        logger.finalize("success")
    close_tracking(loggers)
    where = {"run dir:": str(run_dir), "metrics:": str(path)}
    if any(isinstance(lg, TensorBoardLogger) for lg in loggers):
        where["tensorboard:"] = f"tensorboard --logdir {run_dir}"
    print_summary(title, metrics, {**lines, **where, **tracking_lines(loggers)})
    return path
