"""The Hydra entry-point wrapper shared by train, eval, predict and baseline.

It finds conf/ (inside the package in a wheel, at the repo top in a checkout) and maps errors to
exit codes: LrexpError → its message on stderr and status 2; Hydra's own command-line and
composition errors (raised before the task starts) → status 2; anything else keeps its
traceback and status 1. `run_as_command` is how `python -m lrexp.X` runs and ends.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig

from lrexp.errors import LrexpError

_PACKAGED = Path(__file__).parent / "conf"
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).parents[2] / "conf"


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Turn `task(cfg)` into a console entry point over conf/<config_name>.yaml."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], None]:
        started = False

        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
        def run(cfg: DictConfig) -> Any:
            nonlocal started
            started = True
            try:
                return task(cfg)
            except LrexpError as err:
                print(f"lrexp: error: {err}", file=sys.stderr)
                sys.exit(2)

        def main() -> None:
            nonlocal started
            started = False
            try:
                run()
            except SystemExit as exit_:
                if exit_.code == 1 and not started:
                    sys.exit(2)
                raise

        main.__doc__ = task.__doc__
        return main

    return decorate


def run_as_command(main: Callable[[], None]) -> NoReturn:
    """Run an entry point as `python -m lrexp.X`, then end the process without the
    interpreter's final teardown of every module.

    After importing torch and Lightning, that teardown took about 3 s on a 2-core machine (a
    fifth of the toy run's wall time) and changes nothing anyone can see. All that a normal exit
    does that can be seen still happens first: other threads are joined, atexit handlers run
    (logging, TensorBoard and Hydra close their files) and the standard streams are flushed.
    An uncaught exception ends the process the usual way, with its traceback.
    """
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
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
