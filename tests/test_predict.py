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


def test_a_ten_class_run_reports_multiclass_metrics_and_pictures(
    trained_ten_classes: Path,
) -> None:
    metrics = json.loads((trained_ten_classes / "metrics.json").read_text())
    names = ["t-shirt", "trouser", "pullover", "dress", "coat"]
    names += ["sandal", "shirt", "sneaker", "bag", "ankle-boot"]
    assert {f"test/acc/{n}" for n in names} <= metrics.keys()
    assert metrics["test/acc"] > 0.8  # the fabricated classes are linearly separable
    per_class = [metrics[f"test/acc/{n}"] for n in names]
    assert metrics["test/acc"] == pytest.approx(sum(per_class) / 10)  # 10 test images a class
    figures = {p.stem for p in (trained_ten_classes / "figures").glob("*.png")}
    assert figures == {"weights", "confusion_matrix", "confidently_wrong", "reliability"}


def test_predict_gives_every_class_probability_and_the_top_two(
    trained_ten_classes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = trained_ten_classes / "checkpoints" / "last.ckpt"
    model, datamodule = restore(OmegaConf.create({"data": None}), ckpt)
    datamodule.setup("test")
    images, labels = datamodule.splits["test"]
    for i in range(3):
        Image.fromarray(images[i, 0].numpy(), mode="L").save(tmp_path / f"item{i}.png")
    run_dir = tmp_path / "run"
    status = run_entry(
        main, f"ckpt_path={ckpt}", f"inputs={tmp_path}/*.png", f"hydra.run.dir={run_dir}"
    )
    assert status == 0
    rows = read_rows(run_dir)
    names = datamodule.label_names
    assert list(rows[0]) == ["input", *(f"p_{n}" for n in names), "label"]
    with torch.no_grad():
        expected = model(datamodule.preprocess(images[:3]))
    for row, probs in zip(rows, expected, strict=True):
        got = [float(row[f"p_{n}"]) for n in names]
        assert sum(got) == pytest.approx(1, abs=1e-5)
        assert got == pytest.approx(probs.tolist(), abs=1e-6)
        assert row["label"] == names[int(probs.argmax())]
    out = capsys.readouterr().out
    values, indices = expected[0].topk(2)
    first_line = next(line for line in out.splitlines() if line.startswith(rows[0]["input"]))
    assert f"{names[int(indices[0])]} ({values[0]:.4f})" in first_line  # the top class
    assert f"{names[int(indices[1])]} ({values[1]:.4f})" in first_line  # the runner-up
