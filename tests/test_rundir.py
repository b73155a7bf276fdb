"""A run dir belongs to one run: claimed atomically, .hydra/ written by lrexp, and continued only
by the run whose checkpoint lies in it."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from lrexp.checkpoints import continues_run
from lrexp.errors import LrexpError
from lrexp.rundir import (
    METRICS_FILE,
    close_run_log,
    open_run_log,
    start_run,
    write_atomic,
    write_metrics,
)
from lrexp.train import main
from tests.conftest import run_entry
from tests.test_conf import compose_train


def strict_json(text: str) -> dict:
    """json.loads as a strict parser reads it: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[DictConfig]:
    """The config a task gets (Hydra's node set aside); the root log handlers restored after."""
    handlers = logging.getLogger().handlers[:]
    cfg = compose_train(["model.lr=0.5"], tmp_path)
    with open_dict(cfg):
        del cfg["hydra"]
    yield cfg
    close_run_log()
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


def test_metrics_json_is_strict_json_and_the_log_says_what_it_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = {"test/acc": 0.5, "test/loss": math.nan, "boundary_h": math.inf, "w": -math.inf}
    with caplog.at_level(logging.WARNING, logger="lrexp.rundir"):
        path = write_metrics(tmp_path, metrics)
    assert path == tmp_path / METRICS_FILE
    assert strict_json(path.read_text()) == {"test/acc": 0.5}
    said = " ".join(r.getMessage() for r in caplog.records)
    for key, value in (("test/loss", "nan"), ("boundary_h", "inf"), ("w", "-inf")):
        assert f"leaves out {key}: it is {value}" in said


def test_records_before_the_claim_reach_the_run_log(
    cfg: DictConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the job logs before its run dir is claimed (the Trainer's device lines, the data's
    splits) is kept, and written first once the dir is claimed."""
    caplog.set_level(logging.INFO)  # as Hydra's job logging
    open_run_log()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: no")
    logging.getLogger("lrexp.data.labels").info("train split: 3 samples")
    run_dir = tmp_path / "run"
    start_run(run_dir, cfg, continuing=False)
    logging.getLogger("lrexp.test").info("after the claim")
    lines = (run_dir / "train.log").read_text().splitlines()
    expected = ["GPU available: no", "train split: 3 samples", "after the claim"]
    assert len(lines) == len(expected)
    assert all(line.endswith(message) for line, message in zip(lines, expected, strict=True))


def test_a_job_that_claims_no_dir_drops_what_it_kept(tmp_path: Path) -> None:
    open_run_log()
    logging.getLogger("lrexp.test").info("kept")
    close_run_log()
    assert not [h for h in logging.getLogger().handlers if h.get_name() == "lrexp-run-log"]
    assert not logging.getLogger("lightning.pytorch").handlers or all(
        h.get_name() != "lrexp-run-log" for h in logging.getLogger("lightning.pytorch").handlers
    )


def run_log(run_dir: Path) -> str:
    return (run_dir / "train.log").read_text()


def test_a_toy_runs_log_tells_its_story(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    overrides = ("data=toy", "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={run_dir}")
    assert run_entry(main, *overrides, "trainer.enable_progress_bar=false") == 0
    text = run_log(run_dir)
    assert "GPU available:" in text  # Lightning's device lines, logged before the claim
    metrics = strict_json((run_dir / METRICS_FILE).read_text())
    for key in ("p_pass_at_4h", "boundary_h", "test/acc"):
        assert re.search(rf"{re.escape(key)}\s*│\s*{metrics[key]:.4f}", text), key
    assert f"run dir: {run_dir}" in text and f"metrics: {run_dir / METRICS_FILE}" in text
    assert "tensorboard" not in text  # logger=none
    out = capsys.readouterr().out
    assert f"run dir: {run_dir}" in out  # the console shows the summary once, the file too
    assert out.count("p_pass_at_4h") == 1


def test_an_image_runs_log_holds_the_lr_and_the_splits(mnist_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = ("data=mnist", f"paths.data_dir={mnist_root}", "trainer.max_epochs=1")
    assert run_entry(main, *overrides, "logger=none", f"hydra.run.dir={run_dir}") == 0
    text = run_log(run_dir)
    assert re.search(r"model\.optimizer=auto: lbfgs \(the \d+ x 784 training split", text)
    assert re.search(r"model\.lr=auto: [0-9.e+-]+ for lbfgs", text)
    for split in ("train", "val", "test"):
        assert f"{split} split:" in text
    assert "GPU available:" in text and "test/acc" in text
