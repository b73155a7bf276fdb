"""check_config lets every shipped config through; build() tells a user's bad value from a bug.

The bad values themselves are the table in tests/test_cli.py, run through the entry points.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from lrexp.config import build, check_config
from lrexp.errors import LrexpError
from tests.test_conf import compose_train


@pytest.mark.parametrize(
    "override",
    [
        *(f"data={d}" for d in ("toy", "mnist", "fashion_mnist", "cifar10")),
        "trainer=ddp_cpu",
        "experiment=lecture06",
        "seed=null",
        "data=mnist data.val_fraction=0",
    ],
)
def test_every_shipped_cpu_config_passes(override: str, tmp_path: Path) -> None:
    check_config(compose_train(override.split(), tmp_path))


def test_a_value_the_trainer_rejects_names_the_key() -> None:
    node = OmegaConf.create({"_target_": "lightning.pytorch.Trainer", "precision": "17"})
    with pytest.raises(LrexpError, match=r"^trainer: Precision '17' is invalid"):
        build(node, "trainer")


def test_lrexps_own_error_comes_out_unwrapped() -> None:
    node = OmegaConf.create({"_target_": "lrexp.data.toy.ToyDataModule", "hours": []})
    with pytest.raises(LrexpError, match=r"^data.hours is empty"):
        build(node, "data")


def test_an_unknown_argument_is_a_user_error_even_for_lrexps_classes() -> None:
    node = OmegaConf.create({"_target_": "lrexp.model.LogisticRegression", "in_features": 1})
    with pytest.raises(LrexpError, match=r"^model: .*unexpected keyword argument 'lr_typo'"):
        build(node, "model", lr_typo=0.1)


def test_any_other_error_in_lrexps_classes_stays_a_bug_with_its_traceback() -> None:
    node = OmegaConf.create({"_target_": "lrexp.model.LogisticRegression", "in_features": "two"})
    with pytest.raises(InstantiationException):
        build(node, "model")
