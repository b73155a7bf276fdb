"""lrexp from Python (a notebook, a script): `lrexp.run("train", ["model.lr=0.1"])`.

It runs the very task the command line runs (`python -m lrexp.<command> <overrides>`) on the
config Hydra composes from conf/ with those overrides, in a run dir made as Hydra's run mode
makes it (hydra.run.dir), and returns what the run left: its metrics, its run dir and its model.
A user error raises LrexpError (a bad override too, with Hydra's error as its cause) instead of
exiting. Each call leaves the interpreter as it found it: Hydra uninitialised, the environment,
the root logger and Hydra's run config restored, so calls can follow each other.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lrexp.errors import LrexpError

# command → (its config in conf/, the module and name of the task function its CLI runs)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("config", "lrexp.train", "task"),
    "eval": ("eval", "lrexp.eval", "evaluate"),
    "predict": ("predict", "lrexp.predict", "predict"),
    "baseline": ("baseline", "lrexp.baseline", "baseline"),
    "export": ("export", "lrexp.export", "export"),
}


@dataclass(frozen=True)
class RunResult:
    """What one run left.

    metrics: its metrics.json ({} when it writes none: predict, export); run_dir: its run dir;
    model: train and baseline: the run's best checkpoint's model (its last checkpoint's when no
    best is known); eval, predict and export: the checkpoint's model; None without a
    checkpoint (callbacks=none); output: the task's own return value (predict: its rows;
    export: the model file's path).
    """

    command: str
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    output: Any = None


def run(command: str, overrides: Sequence[str] = ()) -> RunResult:
    """Run `python -m lrexp.<command> <overrides>` in this process and return its result."""
    from hydra.core.global_hydra import GlobalHydra

    if command not in COMMANDS:
        raise LrexpError(f"command {command!r}: use one of {', '.join(COMMANDS)}")
    if isinstance(overrides, str):
        raise LrexpError(f"overrides={overrides!r}: give a list of strings, e.g. ['model.lr=0.1']")
    config_name, module, function = COMMANDS[command]
    task = getattr(importlib.import_module(module), function)
    GlobalHydra.instance().clear()
    try:
        cfg = _compose(config_name, list(overrides))
    finally:
        GlobalHydra.instance().clear()
    output, run_dir = _run_job(task, cfg)
    metrics_path = run_dir / "metrics.json"
    return RunResult(
        command=command,
        run_dir=run_dir,
        metrics=json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
        model=_model(command, cfg, run_dir),
        output=output,
    )


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The config Hydra composes for the command line, with its `hydra` node (run mode)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from lrexp.cli import CONFIG_DIR

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        message = " ".join(str(err).split())
        raise LrexpError(f"overrides {overrides}: {message}") from err


def _run_job(task: Callable[[DictConfig], Any], cfg: DictConfig) -> tuple[Any, Path]:
    """The task on cfg, as hydra.core.utils.run_job runs it in run mode: Hydra's run config set
    for the task's HydraConfig.get(), hydra.run.dir made and named hydra.runtime.output_dir,
    hydra.job.env_set applied; no logging reconfigured, and every global restored after."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import env_override

    from lrexp.cli import quiet_irrelevant_output
    from lrexp.rundir import close_run_log, open_run_log

    quiet_irrelevant_output()  # as the command line: no advertisement, no irrelevant warning
    hydra_config = HydraConfig.instance()
    saved_hydra_cfg, saved_env = hydra_config.cfg, dict(os.environ)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        hydra_config.set_config(cfg)  # resolves hydra.run.dir's ${now:...} and ${hydra:...}
        run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).absolute()
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(run_dir)
        hydra_config.set_config(cfg)
        task_cfg = copy.deepcopy(cfg)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        run_dir.mkdir(parents=True, exist_ok=True)
        root.setLevel(logging.INFO)  # as Hydra's job logging: the run's log file gets INFO
        open_run_log()
        with env_override(cfg.hydra.job.env_set):
            return task(task_cfg), run_dir
    finally:
        close_run_log()
        for handler in set(root.handlers) - set(saved_handlers):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved_level)
        os.environ.clear()
        os.environ.update(saved_env)
        hydra_config.cfg = saved_hydra_cfg


def _model(command: str, cfg: DictConfig, run_dir: Path) -> Any:
    """The run's model: the checkpoint it was given (eval, predict, export), or the best one it
    wrote (train, baseline) as its last checkpoint records it, else that last checkpoint."""
    from lrexp.checkpoints import CHECKPOINT_DIR, load_checkpoint, restore

    if command in ("eval", "predict", "export"):
        path = Path(cfg.ckpt_path)
    else:
        path = run_dir / CHECKPOINT_DIR / "last.ckpt"
        if not path.is_file():
            return None
        # Lightning keeps each ModelCheckpoint's state under a key naming its class.
        states = load_checkpoint(str(path)).get("callbacks", {}).values()
        best = next((s["best_model_path"] for s in states if s.get("best_model_path")), None)
        if best and Path(best).is_file():
            path = Path(best)
    model, _ = restore(OmegaConf.create({"data": None}), path)
    return model.eval()
