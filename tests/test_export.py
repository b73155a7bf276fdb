"""`python -m lrexp.export`: the exported file gives lrexp's probabilities from raw inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lrexp.checkpoints import restore
from lrexp.export import main
from tests.conftest import run_entry

BATCHES = (1, 7)  # the file's batch dimension is dynamic


def onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return lambda x: session.run(None, {name: x})[0]


def torchscript_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    module = torch.jit.load(str(path))
    return lambda x: module(torch.from_numpy(x)).detach().numpy()


RUNNERS = {"onnx": ("model.onnx", onnx_runner), "torchscript": ("model.pt", torchscript_runner)}


def export_run(ckpt: Path, run_dir: Path, *overrides: str) -> Callable[[np.ndarray], np.ndarray]:
    fmt = next((o.split("=")[1] for o in overrides if o.startswith("format=")), "onnx")
    assert run_entry(main, f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}", *overrides) == 0
    file_name, runner = RUNNERS[fmt]
    return runner(run_dir / file_name)


def in_batches(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    return [run(x[i : i + size]) for size in BATCHES for i in range(0, size * 2, size)]


def expected_batches(expected: np.ndarray) -> list[np.ndarray]:
    return [expected[i : i + size] for size in BATCHES for i in range(0, size * 2, size)]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_export_gives_predicts_probabilities_for_raw_pixels(
    trained_mnist: Path, tmp_path: Path, fmt: str, dtype: str
) -> None:
    ckpt = trained_mnist / "checkpoints" / "last.ckpt"
    run = export_run(ckpt, tmp_path, f"format={fmt}", f"input_dtype={dtype}")
    model, datamodule = restore(OmegaConf.create({"data": None}), ckpt)
    datamodule.setup("test")
    images = datamodule.splits["test"][0][:14]  # uint8 (N, 1, 28, 28), as predict reads files
    with torch.no_grad():
        expected = model(datamodule.preprocess(images)).numpy()
    raw = images.flatten(1).numpy().astype(dtype)
    got = in_batches(run, raw)
    assert [g.shape for g in got] == [e.shape for e in expected_batches(expected)]
    np.testing.assert_allclose(
        np.concatenate(got), np.concatenate(expected_batches(expected)), rtol=0, atol=1e-5
    )
    assert datamodule.feature_mean is not None  # the standardisation was part of the graph
    assert expected.std() > 0.01  # the images get different answers: a real comparison


def test_export_gives_the_toy_runs_answer(trained_toy: Path, tmp_path: Path) -> None:
    run = export_run(trained_toy / "checkpoints" / "last.ckpt", tmp_path)
    hours = np.linspace(0.0, 8.0, 14, dtype=np.float32).reshape(-1, 1)
    hours[0, 0] = 4.0
    model, _ = restore(OmegaConf.create({"data": None}), trained_toy / "checkpoints/last.ckpt")
    with torch.no_grad():
        expected = model(torch.from_numpy(hours)).numpy()
    np.testing.assert_allclose(
        np.concatenate(in_batches(run, hours)),
        np.concatenate(expected_batches(expected)),
        rtol=0,
        atol=1e-5,
    )
    p_pass_at_4h = json.loads((trained_toy / "metrics.json").read_text())["p_pass_at_4h"]
    assert run(hours[:1])[0] == pytest.approx(p_pass_at_4h, abs=1e-5)


def test_export_card_describes_the_file(trained_mnist: Path, tmp_path: Path) -> None:
    ckpt = next((trained_mnist / "checkpoints").glob("best-*.ckpt"))
    export_run(ckpt, tmp_path)
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["label_names"] == ["8", "3"]  # data=mnist: label 1 is digit 3
    assert card["input"]["shape"] == ["batch", 784]
    assert card["input"]["dtype"] == "float32"
    assert len(card["preprocessing"]) == 2  # x / 255, then standardisation
    assert card["output"]["shape"] == ["batch"]
    assert card["training_metrics"] == json.loads((trained_mnist / "metrics.json").read_text())
    assert card["opset"] == 18
    import onnx

    proto = onnx.load(str(tmp_path / "model.onnx"))
    assert [op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")] == [18]
    assert set(card["versions"]) >= {"lrexp", "torch"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("format=tflite", "format=tflite: unknown format"),
        ("ckpt_path={missing}", "no such file"),
        ("ckpt_path={foreign}", "not an lrexp checkpoint"),
        ("input_dtype=uint8", "input_dtype=uint8 is for models trained on images"),
    ],
)
def test_export_refuses_bad_input_in_one_line(
    trained_toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture, override: str, message: str
) -> None:
    foreign = tmp_path / "foreign.ckpt"  # a Lightning-shaped checkpoint that lrexp did not write
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, foreign)
    override = override.format(missing=tmp_path / "nope.ckpt", foreign=foreign)
    args = [override, f"hydra.run.dir={tmp_path / 'run'}"]
    if not override.startswith("ckpt_path="):
        args.append(f"ckpt_path={trained_toy / 'checkpoints' / 'last.ckpt'}")
    assert run_entry(main, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list((tmp_path / "run").glob("model.*"))


def test_export_never_overwrites_an_export(
    trained_toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = trained_toy / "checkpoints" / "last.ckpt"
    export_run(ckpt, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for fmt in ("onnx", "torchscript"):
        capsys.readouterr()
        args = (f"ckpt_path={ckpt}", f"format={fmt}", f"hydra.run.dir={tmp_path}")
        assert run_entry(main, *args) == 2
        assert "already holds an export (model.onnx)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_of_a_k_class_table_model_gives_predicts_probabilities(
    tmp_path: Path, fmt: str
) -> None:
    """Iris (three species, a string target) with a categorical column: the file takes the raw
    numeric columns and each category's index, and returns the three class probabilities."""
    import pandas as pd
    from sklearn.datasets import load_iris

    from lrexp import train
    from tests.data.test_table import write

    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["size"] = np.where(frame["petal length (cm)"] > 4, "long", "short")
    frame["species"] = data.target_names[data.target]
    path = write(frame, tmp_path / "iris.parquet")
    run_dir = tmp_path / "run"
    overrides = ("data=table", f"data.path={path}", "data.target=species", "logger=none")
    assert run_entry(train.main, *overrides, f"hydra.run.dir={run_dir}") == 0
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    run = export_run(ckpt, tmp_path / "export", f"format={fmt}")

    model, datamodule = restore(OmegaConf.create({"data": None}), ckpt)
    datamodule.setup("test")
    raw = datamodule.splits["test"][0][:14].contiguous()
    with torch.no_grad():
        expected = model(datamodule.preprocess(raw)).numpy()
    assert expected.shape == (14, 3)
    got = in_batches(run, raw.numpy().astype(np.float32))
    for g, e in zip(got, expected_batches(expected), strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)
        np.testing.assert_allclose(g.sum(1), 1, atol=1e-5)
    card = json.loads((tmp_path / "export" / "model.json").read_text())
    assert pd.Series(card["label_names"]).tolist() == ["setosa", "versicolor", "virginica"]
