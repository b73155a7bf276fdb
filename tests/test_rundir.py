"""A run dir belongs to one run: claimed atomically, .hydra/ written by lrexp, and continued only
by the run whose checkpoint lies in it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from lrexp.checkpoints import continues_run
from lrexp.errors import LrexpError
from lrexp.rundir import start_run, write_atomic
from tests.test_conf import compose_train


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[DictConfig]:
    """The config a task gets (Hydra's node set aside); the root log handlers restored after."""
    handlers = logging.getLogger().handlers[:]
    cfg = compose_train(["model.lr=0.5"], tmp_path)
    with open_dict(cfg):
        del cfg["hydra"]
    yield cfg
    for handler in logging.getLogger().handlers[:]:
        if handler not in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


def test_of_runs_racing_for_one_dir_only_one_gets_it(cfg: DictConfig, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    def attempt(_: int) -> str:
        try:
            start_run(run_dir, cfg, continuing=False)
            return "claimed"
        except LrexpError as err:
            return str(err)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count("claimed") == 1
    refused = [r for r in results if r != "claimed"]
    assert all(f"hydra.run.dir={run_dir} already holds a run" in r for r in refused)


def test_a_new_run_writes_hydra_files_and_its_log(cfg: DictConfig, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start_run(run_dir, cfg, continuing=False)
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml") == cfg
    assert OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") == ["model.lr=0.5"]
    assert "run:" in (run_dir / ".hydra" / "hydra.yaml").read_text()
    logging.getLogger("lrexp.test").warning("into the run's log")
    assert "into the run's log" in (run_dir / "train.log").read_text()
    assert not list(run_dir.glob(".hydra/.*.partial"))


def test_only_the_dirs_own_run_continues_without_a_claim(cfg: DictConfig, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    assert continues_run(str(run_dir / "checkpoints" / "last.ckpt"), run_dir)
    assert not continues_run(str(tmp_path / "other" / "last.ckpt"), run_dir)
    assert not continues_run(None, run_dir)
    start_run(run_dir, cfg, continuing=True)
    assert not (run_dir / ".hydra").exists()  # a continued run writes it when it finishes
    with pytest.raises(LrexpError, match="already holds a run"):
        start_run(run_dir, cfg, continuing=False)


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    write_atomic(tmp_path / "metrics.json", b"{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
