"""A run's directory: claimed by one run, and what it leaves there (.hydra/, metrics.json,
figures/, the closing summary); and the safe loading of the checkpoints it names.

Every file is written atomically — to a temporary file in the same folder, then renamed — so an
interrupted run never leaves a half-written file that looks complete; and nothing is written
before every input is checked, so a failed run never touches an earlier run's files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

    from lrexp.api import RunResult

METRICS_FILE = "metrics.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
CHECKPOINT_DIR = "checkpoints"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would; mkstemp gives 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    path = run_dir / METRICS_FILE
    write_atomic(path, (json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n").encode())
    return path


def save_figures(run_dir: Path, figures: Mapping[str, Figure], loggers: list[Any]) -> None:
    """figures/<name>.png, and that same picture as a TensorBoard image (drawn once, not
    again by TensorBoard's add_figure)."""
    import io

    import matplotlib.pyplot as plt

    tensorboards = [lg.experiment for lg in loggers if hasattr(lg.experiment, "add_image")]
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        plt.close(figure)
        write_atomic(run_dir / "figures" / f"{name}.png", buffer.getvalue())
        if tensorboards:
            buffer.seek(0)
            pixels = plt.imread(buffer, format="png")
            for writer in tensorboards:
                writer.add_image(f"figures/{name}", pixels, dataformats="HWC")


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` → this run dir's checkpoints/last.ckpt; a path must name an existing file."""
    if ckpt_path is None:
        return None
    path = run_dir / CHECKPOINT_DIR / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = (
            "pass hydra.run.dir=<the run's dir> with ckpt_path=last"
            if ckpt_path == "last"
            else "give the path of an existing .ckpt file"
        )
        raise LrexpError(f"ckpt_path={ckpt_path}: {path} does not exist; {hint}")
    return str(path)


def continues_run(ckpt_path: str | None, run_dir: Path) -> bool:
    """Whether this run resumes the run that lives in run_dir (its checkpoint lies there)."""
    return ckpt_path is not None and (
        Path(ckpt_path).resolve().parent == (run_dir / CHECKPOINT_DIR).resolve()
    )


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
    """<job name>.log in the run dir, in the console's format (Hydra's file log, opened late)."""
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handler = logging.FileHandler(run_dir / f"{HydraConfig.get().job.name}.log")
    if root.handlers:
        handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)


def load_checkpoint(path: str, key: str = "ckpt_path") -> dict[str, Any]:
    """A checkpoint's contents, unpickled with weights_only=True: tensors and plain values only,
    so a crafted file cannot run code. Any file that is not a Lightning checkpoint is an
    LrexpError naming it."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise LrexpError(
            f"{key}={path} holds pickled objects besides tensors and plain values "
            f"({found[1] if found else 'not a checkpoint lrexp wrote'}), which lrexp does not "
            "unpickle (weights_only=True): only load files you trust"
        ) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... for bad bytes
        detail = str(err).splitlines()[0].split(". ")[0] if str(err) else "no data"
        raise LrexpError(
            f"{key}={path} is not a readable checkpoint ({type(err).__name__}: {detail}): "
            "it may be truncated or corrupt"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise LrexpError(f"{key}={path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_checkpoint_fits(
    checkpoint: dict[str, Any], model: nn.Module, path: str, key: str = "ckpt_path"
) -> None:
    """Stop before training if the checkpoint's tensors do not fit the configured model, e.g. a
    model trained on 784 features (MNIST) resumed or tested with data=toy (1 feature)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
    if found.keys() != expected.keys():
        raise LrexpError(
            f"{key}={path} holds parameters {sorted(found)}, but the model needs {sorted(expected)}"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise LrexpError(
                f"{key}={path} does not fit this config: its {name} has shape {list(found[name])}, "
                f"the model here needs {list(shape)} (model.in_features comes from the data "
                "config): pass the data config the checkpoint was trained with"
            )


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


class _CallableModule(types.ModuleType):
    """`lrexp.run` is both this module and the Python API's run(command, overrides) (lrexp.api):
    importing a submodule makes it the package's attribute of that name, so the module itself
    answers the call."""

    def __call__(self, command: str, overrides: Sequence[str] = ()) -> RunResult:
        from lrexp.api import run

        return run(command, overrides)


sys.modules[__name__].__class__ = _CallableModule
