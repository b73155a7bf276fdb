"""The Hydra entry-point wrapper shared by train, eval, predict, baseline and export.

It finds conf/ (inside the package in a wheel, at the repo top in a checkout) and maps the way a
task ends to an exit status: LrexpError → its message on stderr, status 2; Hydra's own
command-line and composition errors (raised before the task starts) → 2; Ctrl-C → one line on
how to resume, status 130 (the shell's convention for SIGINT); anything else keeps its
traceback, status 1. `run_as_command` is how `python -m lrexp.X` runs and ends.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig

from lrexp.errors import LrexpError, RunInterrupted

_PACKAGED = Path(__file__).parent / "conf"
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).parents[2] / "conf"
INTERRUPTED = 130

# Output that does not apply to an lrexp run: lrexp's loaders serve in-memory tensors (worker
# processes would only add overhead); it logs whole epochs, so Trainer(log_every_n_steps)
# changes no curve; Lightning's own use of an API torch deprecates.
IRRELEVANT_WARNINGS = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
)
# Lightning's advertisement for its cloud logger, printed by every Trainer.
ADVERTISEMENTS = ("litlogger", "litmodels")


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(word in record.getMessage() for word in ADVERTISEMENTS)


def quiet_irrelevant_output() -> None:
    """Filter what a run's output would show that does not concern the run (idempotent)."""
    for message in IRRELEVANT_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Turn `task(cfg)` into a console entry point over conf/<config_name>.yaml."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], None]:
        started = False

        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
        def run(cfg: DictConfig) -> Any:
            from lrexp.rundir import close_run_log, open_run_log

            nonlocal started
            started = True
            quiet_irrelevant_output()
            open_run_log()  # the run's log file holds the job's story from its start
            try:
                return task(cfg)
            except LrexpError as err:
                print(f"lrexp: error: {err}", file=sys.stderr)
                sys.exit(2)
            except RunInterrupted as err:
                print(f"lrexp: {err}", file=sys.stderr)
                sys.exit(INTERRUPTED)
            finally:
                close_run_log()

        def main() -> None:
            nonlocal started
            started = False
            try:
                run()
            except KeyboardInterrupt:
                print("lrexp: interrupted", file=sys.stderr)
                sys.exit(INTERRUPTED)
            except SystemExit as exit_:
                if exit_.code == 1 and not started:
                    sys.exit(2)
                raise

        main.__doc__ = task.__doc__
        return main

    return decorate


def run_as_command(main: Callable[[], None]) -> NoReturn:
    """Run an entry point as `python -m lrexp.X`, then end the process the way a normal exit
    does, without the interpreter's module teardown (lrexp.lightning_fast.exit_now). An uncaught
    exception ends the process the usual way, with its traceback."""
    from lrexp.lightning_fast import exit_now

    try:
        main()
        code = None
    except SystemExit as exit_:
        code = exit_.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python does
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    exit_now(code or 0)
