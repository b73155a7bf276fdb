"""lrexp: logistic-regression experiments on PyTorch Lightning and Hydra.

`lrexp.run(command, overrides)` runs a command from Python (lrexp.api). It is imported on first
use, so `import lrexp` stays free of torch, Lightning and Hydra; `lrexp.run` is also the module
of run dirs (lrexp/run.py), which answers that call (see there).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["RunResult", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        return importlib.import_module("lrexp.run")
    if name == "RunResult":
        return importlib.import_module("lrexp.api").RunResult
    raise AttributeError(f"module 'lrexp' has no attribute {name!r}")
