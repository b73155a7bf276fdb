"""Every option of every config group composes, and its objects instantiate."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Timer
from omegaconf import DictConfig, OmegaConf

from lrexp.cli import CONFIG_DIR
from lrexp.config import RENAMED, build_group, check_config
from lrexp.experiment import build_trainer

GROUPS = ("data", "model", "trainer", "logger", "callbacks", "experiment", "hparams_search")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compose_train(overrides: list[str], tmp_path: Path) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    cfg.paths.output_dir = str(tmp_path / "run")
    cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


# What an option leaves for the user to give (data=table: the file and its target column; the

REQUIRED = {"data=table": ["data.path=table.csv", "data.target=y"]}


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in GROUPS for option in options(group)]
)
def test_every_option_composes_and_resolves(override: str, tmp_path: Path) -> None:
    cfg = compose_train([override, *REQUIRED.get(override, [])], tmp_path)
    group, option = override.split("=")
    assert HydraConfig.get().runtime.choices[group] == option
    task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    OmegaConf.to_container(task, resolve=True, throw_on_missing=True)


def test_groups_hold_the_interface_options() -> None:
    assert set(options("data")) >= {"toy", "mnist", "fashion_mnist", "cifar10"}
    assert set(options("trainer")) >= {"cpu", "gpu", "ddp", "ddp_cpu"}
    assert set(options("logger")) >= {"tensorboard", "csv", "none"}
    assert set(options("callbacks")) >= {"default", "none"}
    assert "lecture06" in options("experiment")
    assert options("model") == ["logistic"]


def test_default_is_the_lecture(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path)
    assert cfg.data._target_ == "lrexp.data.toy.ToyDataModule"
    model = cfg.model
    assert (model.optimizer, model.lr, model.reduction, model.scheduler) == (
        "sgd",
        0.01,
        "sum",
        None,
    )
    assert (model.C, model.l1_ratio, model.class_weight) == (None, 0.0, None)
    assert cfg.trainer.max_epochs == 1000
    assert cfg.trainer.accelerator == "cpu"


def test_lecture06_matches_the_default_toy_run(tmp_path: Path) -> None:
    default = compose_train([], tmp_path)
    lecture = compose_train(["experiment=lecture06"], tmp_path)
    for key in ("data", "model", "trainer"):
        assert OmegaConf.to_container(default[key]) == OmegaConf.to_container(lecture[key])


@pytest.mark.parametrize(
    ("data", "classes", "width", "outputs"),
    [
        ("toy", None, 1, 1),
        ("mnist", None, 784, 1),
        ("cifar10", None, 3072, 1),
        ("mnist", "all", 784, 10),
    ],
)
def test_model_width_and_classes_follow_the_data(
    data: str, classes: str | None, width: int, outputs: int, tmp_path: Path, request
) -> None:
    """in_features, num_classes and the training rows per label reach the model from the data."""
    from lrexp.experiment import build_experiment

    root = request.getfixturevalue("cifar_root" if data == "cifar10" else "mnist_root")
    extra = [f"paths.data_dir={root}", f"data.classes={classes or 'null'}"] if data != "toy" else []
    cfg = compose_train([f"data={data}", *extra], tmp_path)
    cfg.paths.data_dir = str(root)
    datamodule, model, _ = build_experiment(cfg)
    assert (model.linear.in_features, model.linear.out_features) == (width, outputs)
    assert model.hparams.class_counts == datamodule.class_counts
    assert sum(model.hparams.class_counts) == len(datamodule.splits["train"][1])
    assert model.hparams.class_names == list(datamodule.label_names)


@pytest.mark.parametrize("data", ["toy", "mnist", "fashion_mnist", "cifar10"])
def test_validation_and_checkpoints_share_the_datas_cadence(data: str, tmp_path: Path) -> None:
    """Image data validate, checkpoint and log training metrics every 5th epoch, the toy every
    50th; the checkpoint callback follows trainer.check_val_every_n_epoch, overrides too."""
    for overrides, every in (
        ([], 50 if data == "toy" else 5),
        (["trainer.check_val_every_n_epoch=2"], 2),
    ):
        cfg = compose_train([f"data={data}", *overrides], tmp_path)
        trainer, _ = build_trainer(cfg)
        (checkpoint,) = instantiate(cfg.callbacks.model_checkpoint)
        assert trainer.check_val_every_n_epoch == checkpoint._every_n_epochs == every
        assert trainer.max_epochs % every == 0  # the last epoch validates and saves the best


@pytest.mark.parametrize("logger", options("logger"))
def test_loggers_instantiate(logger: str, tmp_path: Path) -> None:
    # logger=mlflow opens its local store (outputs/mlflow.db) when made: keep it in tmp_path.
    cfg = compose_train([f"logger={logger}", f"paths.log_dir={tmp_path / 'outputs'}"], tmp_path)
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    assert [type(x).__name__ for x in loggers] == {
        "tensorboard": ["TensorBoardLogger"],
        "csv": ["CSVLogger"],
        "mlflow": ["MLFlowLogger"],
        "none": [],
    }[logger]


@pytest.mark.parametrize("callbacks", options("callbacks"))
def test_callbacks_instantiate(callbacks: str, tmp_path: Path) -> None:
    cfg = compose_train([f"callbacks={callbacks}"], tmp_path)
    made = build_group(cfg, "callbacks")
    if callbacks == "default":
        checkpoint, bar = made  # early stopping is off by default
        assert (type(bar).__name__, bar.refresh_rate) == ("FastProgressBar", 10)
        assert (checkpoint.monitor, checkpoint.save_top_k, checkpoint.save_last) == (
            "val/loss",
            1,
            True,
        )
        assert checkpoint.dirpath == str(tmp_path / "run" / "checkpoints")
    else:
        assert made == []


@pytest.mark.parametrize("enabled", [True, False])
def test_enable_progress_bar_switches_the_configured_bar(enabled: bool, tmp_path: Path) -> None:
    from lrexp.lightning_fast import FastProgressBar

    cfg = compose_train([f"trainer.enable_progress_bar={enabled}"], tmp_path)
    trainer, _ = build_trainer(cfg)
    bar = trainer.progress_bar_callback
    assert type(bar) is FastProgressBar if enabled else bar is None


def test_early_stopping_is_a_callbacks_option(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import EarlyStopping

    cfg = compose_train(
        ["callbacks.early_stopping.enabled=true", "callbacks.early_stopping.patience=2"], tmp_path
    )
    (stopper,) = [c for c in build_group(cfg, "callbacks") if isinstance(c, EarlyStopping)]
    assert (stopper.monitor, stopper.patience, stopper.mode) == ("val/loss", 2, "min")


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_cpu_trainers_instantiate(trainer: str, tmp_path: Path) -> None:
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    made, _ = build_trainer(cfg)
    assert made.num_devices == (2 if trainer == "ddp_cpu" else 1)
    assert type(made.strategy).__name__ == (
        "DDPStrategy" if trainer == "ddp_cpu" else "SingleDeviceStrategy"
    )


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_trainers_ask_for_cuda(trainer: str, tmp_path: Path) -> None:
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    assert cfg.trainer.accelerator == "gpu"
    expected = ("ddp", -1) if trainer == "ddp" else ("auto", 1)
    assert (cfg.trainer.strategy, cfg.trainer.devices) == expected


def _timer_seconds(trainer: Trainer) -> float:
    (timer,) = [c for c in trainer.callbacks if isinstance(c, Timer)]
    return timer.time_remaining()


@pytest.mark.parametrize(
    ("override", "read", "expected"),
    [
        ("trainer.strategy=ddp", lambda t: type(t.strategy).__name__, "DDPStrategy"),
        ("trainer.num_nodes=1", lambda t: t.num_nodes, 1),
        ("trainer.precision=bf16-mixed", lambda t: t.precision, "bf16-mixed"),
        ("trainer.max_epochs=3", lambda t: t.max_epochs, 3),
        ("trainer.min_epochs=2", lambda t: t.min_epochs, 2),
        ("trainer.max_time=00:00:01:00", _timer_seconds, 60.0),
        ("trainer.limit_train_batches=2", lambda t: t.limit_train_batches, 2),
        ("trainer.limit_val_batches=0.5", lambda t: t.limit_val_batches, 0.5),
        ("trainer.limit_test_batches=1", lambda t: t.limit_test_batches, 1),
        ("trainer.fast_dev_run=true", lambda t: t.fast_dev_run, True),
        (
            "trainer.deterministic=true",
            lambda t: torch.are_deterministic_algorithms_enabled(),
            True,
        ),
        ("trainer.profiler=simple", lambda t: type(t.profiler).__name__, "SimpleProfiler"),
        ("+trainer.log_every_n_steps=7", lambda t: t.log_every_n_steps, 7),
    ],
)
def test_trainer_arguments_reach_lightning(
    override: str, read: Callable[[Trainer], object], expected: object, tmp_path: Path
) -> None:
    cfg = compose_train([override], tmp_path)
    try:
        assert read(build_trainer(cfg)[0]) == expected
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("data", ["mnist", "table"])
@pytest.mark.parametrize("key", ["minibatches_per_step", "batches_per_fetch"])
def test_minibatches_per_step_keeps_its_earlier_name(
    data: str, key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = [f"data={data}", f"data.{key}=8", "data.path=t.csv", "data.target=y"]
    cfg = compose_train(overrides if data == "table" else overrides[:2], tmp_path)
    with caplog.at_level(logging.WARNING, logger="lrexp.config"):
        check_config(cfg)
    assert cfg.data.minibatches_per_step == 8
    assert "batches_per_fetch" not in cfg.data  # only the current name reaches the class
    warnings = [r.getMessage() for r in caplog.records if r.name == "lrexp.config"]
    if key == "batches_per_fetch":
        assert warnings == [
            "data.batches_per_fetch is the earlier name of data.minibatches_per_step: "
            "use data.minibatches_per_step=8"
        ]
    else:
        assert warnings == []
    if data == "mnist":
        assert instantiate(cfg.data).minibatches_per_step == 8


def test_every_renamed_key_is_declared_under_both_names(tmp_path: Path) -> None:
    for data in ("mnist", "fashion_mnist", "cifar10", "table"):
        cfg = compose_train([f"data={data}"], tmp_path)
        for old, new in RENAMED.items():
            assert OmegaConf.select(cfg, old, default="missing") is None, (data, old)
            assert OmegaConf.select(cfg, new) is not None, (data, new)


def test_every_name_a_config_comment_gives_exists() -> None:
    """conf/ names the functions behind its keys (lrexp.X.Y): each must be importable, so that a
    rename in the code fails here rather than leaving a comment that points nowhere."""
    names = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        names |= set(re.findall(r"\blrexp(?:\.[A-Za-z_]\w*)+", path.read_text()))
    assert "lrexp.rundir.start_run" in names  # the pattern finds them
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        depth = max(i for i in range(1, len(parts) + 1) if _importable(".".join(parts[:i])))
        obj = importlib.import_module(".".join(parts[:depth]))
        for part in parts[depth:]:
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(name)
    assert missing == []


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
