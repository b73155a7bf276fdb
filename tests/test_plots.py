"""The pictures of a run: each one drawn, saved under figures/, and served by TensorBoard."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrexp import plots

IMAGE_FIGURES = ("weights", "roc", "confusion_matrix", "confidently_wrong")


@pytest.mark.parametrize(("shape", "maps"), [((1, 28, 28), 1), ((3, 32, 32), 3)])
def test_weight_map_centres_a_diverging_scale_at_zero(shape: tuple[int, ...], maps: int) -> None:
    weight = torch.linspace(-1, 3, math.prod(shape))
    figure = plots.weight_map(weight, shape, ("sneaker", "sandal"))
    images = [image for ax in figure.axes for image in ax.get_images()]
    assert len(images) == maps  # one heat map per colour channel
    for image in images:
        assert image.get_clim() == (-3.0, 3.0)
        assert image.norm(0.0) == 0.5
        assert image.get_cmap().name == "RdBu_r"


def test_confidently_wrong_shows_the_surest_mistakes_first() -> None:
    images = torch.zeros(5, 1, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1, 1])
    probs = torch.tensor([0.7, 0.1, 0.95, 0.9, 0.4])  # wrong: 0 (0.7), 1 (0.9), 2 (0.95), 4
    figure = plots.confidently_wrong(images, labels, probs, ("sneaker", "sandal"), count=3)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == [
        "true sneaker\npred sandal 0.95",
        "true sandal\npred sneaker 0.90",
        "true sneaker\npred sandal 0.70",
    ]


def test_confidently_wrong_names_true_and_predicted_classes_for_k_classes() -> None:
    images = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2])
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.1, 0.3]])  # 0 and 2 wrong
    figure = plots.confidently_wrong(images, labels, probs, ("cat", "dog", "frog"))
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["true cat\npred dog 0.80", "true frog\npred cat 0.60"]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_weight_templates_share_one_scale_centred_at_zero(shape: tuple[int, ...]) -> None:
    weight = torch.linspace(-2, 1, 3 * math.prod(shape)).reshape(3, -1)
    figure = plots.weight_templates(weight, shape, ("cat", "dog", "frog"))
    images = [image for ax in figure.axes for image in ax.get_images()]
    assert [ax.get_title() for ax in figure.axes if ax.get_images()] == ["cat", "dog", "frog"]
    if shape[0] == 1:
        assert all(image.get_clim() == (-2.0, 2.0) and image.norm(0.0) == 0.5 for image in images)
    else:  # RGB: zero is mid-grey, -limit black, +limit white, one scale for all
        first = images[0].get_array()
        assert first.shape == (32, 32, 3) and first.min() == 0.0
        assert images[-1].get_array().max() == pytest.approx(0.75)


def test_a_k_class_confusion_matrix_names_its_classes() -> None:
    probs = torch.eye(3)[[0, 1, 2, 2]]
    figure = plots.confusion_matrix(probs, torch.tensor([0, 1, 2, 1]), ["cat", "dog", "frog"])
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "frog"]


def test_confidently_wrong_says_when_nothing_is_wrong() -> None:
    figure = plots.confidently_wrong(
        torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        torch.tensor([0, 1]),
        torch.tensor([0.2, 0.8]),
        ("sneaker", "sandal"),
    )
    assert figure.axes[0].texts[0].get_text() == "no test image misclassified"


def test_an_image_run_leaves_every_picture_in_figures_and_tensorboard(trained_mnist: Path) -> None:
    events = EventAccumulator(str(trained_mnist / "tensorboard"))
    events.Reload()
    for name in IMAGE_FIGURES:
        png = trained_mnist / "figures" / f"{name}.png"
        assert png.stat().st_size > 5_000
        (image,) = events.Images(f"figures/{name}")
        assert (image.height, image.width) == plt.imread(png).shape[:2]  # the same picture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_tensorboard_server_serves_the_runs_curves_pictures_and_hparams(
    trained_toy: Path, trained_mnist: Path, tmp_path: Path
) -> None:
    """A real `tensorboard` on 127.0.0.1, asked over its HTTP API, as the browser would."""
    logdir = tmp_path / "outputs"  # `tensorboard --logdir outputs` over two runs
    shutil.copytree(trained_toy / "tensorboard", logdir / "toy")
    shutil.copytree(trained_mnist / "tensorboard", logdir / "mnist")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/data/plugin"
    log = (tmp_path / "tensorboard.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--reload_interval=1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        scalars: dict = {}
        while not all("test/acc" in scalars.get(run, {}) for run in ("toy", "mnist")):
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            assert time.monotonic() < deadline, f"no complete runs after 90 s: {scalars}"
            time.sleep(0.5)
            with contextlib.suppress(OSError):  # not listening yet
                scalars = _get(f"{url}/scalars/tags")
        images = _get(f"{url}/images/tags")
        experiment = _get(f"{url}/hparams/experiment", json.dumps({"experimentName": ""}).encode())
    finally:
        server.kill()
        server.wait(timeout=30)
        log.close()
    for run in ("toy", "mnist"):
        assert {"train/loss", "val/acc", "val/auroc", "test/acc"} <= scalars[run].keys()
    assert "figures/decision_curve" in images["toy"]
    assert {f"figures/{name}" for name in IMAGE_FIGURES} <= images["mnist"].keys()
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert {"model/lr", "data/_target_", "seed"} <= hparams
    assert {"hp/test/acc", "hp/val/loss"} <= metrics
