"""The Hydra entry-point wrapper shared by train, eval, predict and baseline.

It finds conf/ (inside the package in a wheel, at the repo top in a checkout) and maps errors to
exit codes: LrexpError → its message on stderr and status 2; Hydra's own command-line and
composition errors (raised before the task starts) → status 2; anything else keeps its
traceback and status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
