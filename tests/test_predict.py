"""`python -m lrexp.predict`: toy hours and image files, preprocessed as in training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from lrexp.checkpoints import restore
from lrexp.predict import main
from tests.conftest import run_entry


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "predictions.csv").open() as f:
        return list(csv.DictReader(f))


def test_predict_answers_the_lectures_question_as_the_run_did(
    trained_toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = trained_toy / "checkpoints" / "last.ckpt"
    assert (
        run_entry(main, f"ckpt_path={ckpt}", "inputs=[4.0,0.5]", f"hydra.run.dir={tmp_path}") == 0
    )
    p_pass_at_4h = json.loads((trained_toy / "metrics.json").read_text())["p_pass_at_4h"]
    rows = read_rows(tmp_path)
    assert [row["input"] for row in rows] == ["4.0", "0.5"]
    assert float(rows[0]["p_label_1"]) == pytest.approx(p_pass_at_4h, abs=1e-6)
    assert [row["label"] for row in rows] == ["1", "0"]
    out = capsys.readouterr().out
    assert f"4.0\t{p_pass_at_4h:.6f}\t1" in out
    assert f"run dir: {tmp_path}" in out


def test_predict_preprocesses_image_files_as_training_did(
    trained_mnist: Path, tmp_path: Path
) -> None:
    ckpt = trained_mnist / "checkpoints" / "last.ckpt"
    model, datamodule = restore(OmegaConf.create({"data": None}), ckpt)  # the run's own data
    datamodule.setup("test")
    images = datamodule.splits["test"][0][:3]
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy(), mode="L").save(tmp_path / f"digit{i}.png")
    run_dir = tmp_path / "run"
    assert (
        run_entry(main, f"ckpt_path={ckpt}", f"inputs={tmp_path}/*.png", f"hydra.run.dir={run_dir}")
        == 0
    )
    rows = read_rows(run_dir)
    with torch.no_grad():
        expected = model(datamodule.preprocess(images)).tolist()
    assert [Path(row["input"]).name for row in rows] == ["digit0.png", "digit1.png", "digit2.png"]
    assert [float(row["p_label_1"]) for row in rows] == pytest.approx(expected, abs=1e-6)
    assert datamodule.feature_mean is not None  # the checkpoint's statistics were in play


def test_predict_refuses_a_glob_that_matches_nothing(
    trained_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = trained_mnist / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "run"
    assert (
        run_entry(main, f"ckpt_path={ckpt}", f"inputs={tmp_path}/*.png", f"hydra.run.dir={run_dir}")
        == 2
    )
    assert "matches no file" in capsys.readouterr().err
    assert not list(run_dir.glob("*"))  # Hydra made the dir; nothing went in
