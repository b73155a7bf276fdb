"""The pictures of a run: each one drawn, saved under figures/, and served by TensorBoard."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.container import BarContainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrexp import plots
from lrexp.model import predicted_labels

IMAGE_FIGURES = ("weights", "roc", "confusion_matrix", "confidently_wrong", "reliability")
# What the TensorBoard server must serve: curves of both runs, pictures, hparams columns.
SCALARS = {"train/loss", "val/acc", "val/auroc", "test/acc"}
MNIST_IMAGES = {f"figures/{name}" for name in IMAGE_FIGURES}
HPARAMS = {"model/lr", "data/_target_", "seed"}
HP_METRICS = {"hp/test/acc", "hp/val/loss"}


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
    predicted = predicted_labels(probs)
    figure = plots.confidently_wrong(
        images, labels, probs, predicted, ("sneaker", "sandal"), count=3
    )
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
    figure = plots.confidently_wrong(
        images, labels, probs, predicted_labels(probs), ("cat", "dog", "frog")
    )
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
        torch.tensor([0, 1]),
        ("sneaker", "sandal"),
    )
    assert figure.axes[0].texts[0].get_text() == "no test image misclassified"


def random_probs(rows: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(classes, (rows,), generator=generator)
    logits = torch.randn(rows, classes, generator=generator) + 2 * torch.nn.functional.one_hot(
        labels, classes
    )
    probs = logits.softmax(1)
    return (probs[:, 1], labels) if classes == 2 else (probs, labels)


@pytest.mark.parametrize("classes", [2, 4])
def test_the_reliability_bins_give_torchmetrics_ece(classes: int) -> None:
    """Two labels: P(label 1) against the share of label 1; K: the top label's confidence
    against its accuracy; each bin's count; Σ count·|gap| / n is torchmetrics' ECE (15 bins)."""
    from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

    probs, labels = random_probs(500, classes)
    bins = plots.reliability_bins(probs, labels)
    assert bins["count"].sum() == 500 and len(bins["count"]) == 15
    ece = (bins["count"] * (bins["frequency"] - bins["confidence"]).abs()).sum() / 500
    metric = BinaryCalibrationError() if classes == 2 else MulticlassCalibrationError(classes)
    assert ece.item() == pytest.approx(metric(probs, labels).item(), abs=1e-6)


def test_the_reliability_diagram_shows_each_bins_count_and_the_ece() -> None:
    probs = torch.tensor([0.01, 0.02, 0.5, 0.96, 0.97, 0.98, 0.99])
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 0])
    figure = plots.reliability_diagram(probs, labels)
    calibration, counts = figure.axes
    # bins [0, 1/15), [7/15, 8/15) and [14/15, 1]
    assert [t.get_text() for t in counts.texts] == ["2", "1", "4"]
    line = calibration.lines[1]
    assert line.get_ydata().tolist() == pytest.approx([0.0, 1.0, 0.75])
    assert "ECE" in calibration.get_title()


def test_the_coefficients_figure_draws_the_intervals_and_leaves_the_intercept_out() -> None:
    rows = [
        {"class": "1", "feature": "(intercept)", "weight": 0.3, "odds_ratio": 1.35},
        {
            "class": "1",
            "feature": "a",
            "weight": 2.0,
            "odds_ratio": 7.4,
            "ci_low": 1.0,
            "ci_high": 3.5,
        },
        {
            "class": "1",
            "feature": "b",
            "weight": -1.0,
            "odds_ratio": 0.37,
            "ci_low": -2.0,
            "ci_high": 0.0,
        },
    ]
    rows[0] |= {"ci_low": -1.0, "ci_high": 1.6}
    (ax,) = plots.coefficients(rows).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    segments = bars.errorbar.lines[2][0].get_segments()
    assert [(s[0][0], s[1][0]) for s in segments] == [(-2.0, 0.0), (1.0, 3.5)]
    (plain,) = plots.coefficients(
        [{k: v for k, v in r.items() if "ci" not in k} for r in rows]
    ).axes
    assert plain.containers[0].errorbar is None


def test_an_image_run_leaves_every_picture_in_figures_and_tensorboard(trained_mnist: Path) -> None:
    events = EventAccumulator(str(trained_mnist / "tensorboard"))
    events.Reload()
    for name in IMAGE_FIGURES:
        png = trained_mnist / "figures" / f"{name}.png"
        assert png.stat().st_size > 5_000
        (image,) = events.Images(f"figures/{name}")
        assert (image.height, image.width) == plt.imread(png).shape[:2]  # the same picture


def _get(url: str, data: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _serving_url(log: Path, server: subprocess.Popen, deadline: float) -> str:
    """The address the server reports once it listens: it binds a port the system chose
    (--port=0), so no other process can take that port between a choice and the bind."""
    while not (found := re.search(r"TensorBoard \S+ at (http://\S+?)/? ", log.read_text())):
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"tensorboard not serving:\n{log.read_text()}"
        time.sleep(0.1)
    return found[1]


def _not_served_yet(scalars: dict, images: dict, experiment: dict) -> list[str]:
    """What the test expects that the server does not serve (yet: it loads each run's event
    files, several per run, in the background)."""
    expected = {
        "scalars": (scalars, {run: SCALARS for run in ("toy", "mnist")}),
        "images": (images, {"toy": {"figures/decision_curve"}, "mnist": MNIST_IMAGES}),
    }
    missing = [
        f"{kind} {run} {sorted(tags - served.get(run, {}).keys())}"
        for kind, (served, runs) in expected.items()
        for run, tags in runs.items()
        if not tags <= served.get(run, {}).keys()
    ]
    hparams = {info["name"] for info in experiment.get("hparamInfos", [])}
    metrics = {info["name"]["tag"] for info in experiment.get("metricInfos", [])}
    missing += [f"hparam {name}" for name in sorted(HPARAMS - hparams)]
    missing += [f"hparams metric {name}" for name in sorted(HP_METRICS - metrics)]
    return missing


def test_a_tensorboard_server_serves_the_runs_curves_pictures_and_hparams(
    trained_toy: Path, trained_mnist: Path, tmp_path: Path
) -> None:
    """A real `tensorboard` on 127.0.0.1, asked over its HTTP API, as the browser would; waited
    for (90 s at most) until it serves every curve, picture and hparams entry checked here."""
    logdir = tmp_path / "outputs"  # `tensorboard --logdir outputs` over two runs
    shutil.copytree(trained_toy / "tensorboard", logdir / "toy")
    shutil.copytree(trained_mnist / "tensorboard", logdir / "mnist")
    log_path = tmp_path / "tensorboard.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                f"--logdir={logdir}",
                "--host=127.0.0.1",
                "--port=0",
                "--reload_interval=1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        url = f"{_serving_url(log_path, server, deadline)}/data/plugin"
        query = json.dumps({"experimentName": ""}).encode()
        while True:
            scalars = _get(f"{url}/scalars/tags")
            images = _get(f"{url}/images/tags")
            experiment = _get(f"{url}/hparams/experiment", query)
            missing = _not_served_yet(scalars, images, experiment)
            if not missing:
                break
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"not served after 90 s: {missing}"
            time.sleep(0.5)
    finally:
        server.kill()
        server.wait(timeout=30)
