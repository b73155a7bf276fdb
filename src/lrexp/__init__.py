"""lrexp: logistic-regression experiments on PyTorch Lightning and Hydra.

`lrexp.run(command, overrides)` runs a command from Python (lrexp.api). It is imported on first
use, so `import lrexp` stays free of torch, Lightning and Hydra.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["RunResult", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("lrexp.api"), name)
    raise AttributeError(f"module 'lrexp' has no attribute {name!r}")
