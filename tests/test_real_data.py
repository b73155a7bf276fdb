"""One short training on the real Fashion-MNIST of Debian's dataset-fashion-mnist (CI installs
it): the real files, picked up by lrexp itself, through the default config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lrexp.data.mnist import RAW_FILES
from lrexp.train import main

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
def test_sandal_vs_sneaker_on_real_fashion_mnist(
    run_main: Callable[..., int], tmp_path: Path
) -> None:
    missing = [n for n in RAW_FILES if not (SYSTEM_DIR / f"{n}.gz").is_file()]
    assert not missing, f"apt-get install dataset-fashion-mnist: {SYSTEM_DIR} lacks {missing}"
    run_dir = tmp_path / "run"
    overrides = ("data=fashion_mnist", f"paths.data_dir={tmp_path / 'data'}", "logger=none")
    assert run_main(main, *overrides, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}") == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.93  # scikit-learn: 0.96; the default 20 epochs get there too
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / RAW_FILES[0]).stat().st_size == 47040016
