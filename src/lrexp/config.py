"""Check a composed config before anything is instantiated or written.

Hydra already rejects unknown groups and keys; this catches wrong types and impossible values,
naming the key, the value and what is allowed.
"""

from __future__ import annotations

import logging
import math
from numbers import Real
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lrexp.errors import LrexpError

log = logging.getLogger(__name__)

# Keys that were renamed, earlier name → current name. The earlier name stays in conf/ (null) so
# that overriding it still composes; set, it gives its value to the current name, with one
# warning. Every renamed key goes here, and nowhere else reads an earlier name.
RENAMED = {"data.batches_per_fetch": "data.minibatches_per_step"}


def _fail(key: str, value: object, allowed: str) -> LrexpError:
    return LrexpError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_config(cfg: DictConfig) -> None:
    """Apply the renamed keys (rename_keys), then raise LrexpError for the first bad value."""
    rename_keys(cfg)
    seed = cfg.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed < 2**32):
        raise _fail("seed", seed, "an integer in [0, 2**32), or null for a random seed")

    model = cfg.get("model") or {}
    lr = model.get("lr")
    if lr is not None and lr != "auto" and (not _is_number(lr) or not lr > 0):
        raise _fail("model.lr", lr, "a positive number, e.g. model.lr=0.01, or auto")
    _check_solver(model)
    reduction = model.get("reduction")
    if reduction is not None and reduction not in ("mean", "sum"):
        raise _fail("model.reduction", reduction, "mean or sum")
    for key in ("weight_decay", "momentum"):
        value = model.get(key)
        if value is not None and (not _is_number(value) or value < 0):
            raise _fail(f"model.{key}", value, "a number >= 0")

    data = cfg.get("data") or {}
    batch_size = data.get("batch_size")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise _fail("data.batch_size", batch_size, "an integer >= 1")
    per_step = data.get("minibatches_per_step")
    if per_step is not None and (not _is_int(per_step) or per_step < 1):
        raise _fail("data.minibatches_per_step", per_step, "an integer >= 1")
    val_fraction = data.get("val_fraction")
    if val_fraction is not None and (not _is_number(val_fraction) or not 0 <= val_fraction < 1):
        raise _fail("data.val_fraction", val_fraction, "a number in [0, 1), e.g. 0.1")
    steps_on_val = model.get("scheduler") == "plateau" and model.get("optimizer") != "lbfgs"
    if val_fraction == 0 and steps_on_val:
        raise LrexpError(
            "model.scheduler=plateau steps on val/loss, and data.val_fraction=0 leaves no "
            "validation rows: set data.val_fraction=0.1, or another model.scheduler"
        )

    trainer = cfg.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and (not _is_int(max_epochs) or max_epochs < 1):
        raise _fail("trainer.max_epochs", max_epochs, "an integer >= 1")
    _check_accelerator(trainer)

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not isinstance(ckpt_path, str):
        raise _fail("ckpt_path", ckpt_path, "the path of a .ckpt file, or last")


def rename_keys(cfg: DictConfig) -> None:
    """Move each renamed key's value (RENAMED) to its current name, warning once per key, and
    drop the earlier name from `cfg`, so that only the current name reaches the classes."""
    for old, new in RENAMED.items():
        parent_key, leaf = old.rsplit(".", 1)
        parent = OmegaConf.select(cfg, parent_key)
        if not isinstance(parent, DictConfig) or leaf not in parent:
            continue
        value = parent[leaf]
        with open_dict(parent):
            del parent[leaf]
        if value is None:
            continue
        log.warning(f"{old} is the earlier name of {new}: use {new}={value}")
        with open_dict(cfg):
            OmegaConf.update(cfg, new, value, merge=False)


def _check_solver(model: DictConfig) -> None:
    """The optimizer, its schedule and the objective (C, l1_ratio, class_weight)."""
    from lrexp.solvers import OPTIMIZERS, SCHEDULERS

    optimizer = model.get("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise _fail("model.optimizer", optimizer, " or ".join(OPTIMIZERS))
    scheduler = model.get("scheduler")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise _fail("model.scheduler", scheduler, f"null (constant) or {', '.join(SCHEDULERS)}")
    C = model.get("C")
    if C is not None and C != "path" and (not _is_number(C) or not C > 0):
        raise _fail(
            "model.C", C, "a number > 0 (scikit-learn's C; smaller = stronger), null or path"
        )
    length = model.get("path_length", 20)
    if not _is_int(length) or length < 2:
        raise _fail("model.path_length", length, "an integer >= 2 (values of C on the path)")
    l1_ratio = model.get("l1_ratio", 0.0)
    if not _is_number(l1_ratio) or not 0 <= l1_ratio <= 1:
        raise _fail("model.l1_ratio", l1_ratio, "a number in [0, 1] (0: L2, 1: L1)")
    if l1_ratio and C is None:
        raise _fail("model.l1_ratio", l1_ratio, "0 unless model.C sets the penalty's strength")
    weight = model.get("class_weight")
    listed = OmegaConf.is_list(weight) and all(_is_number(w) and w >= 0 for w in weight)
    if weight is not None and weight != "balanced" and not listed:
        raise _fail("model.class_weight", weight, "null, balanced, or one number >= 0 per label")
    for key in ("max_iter",):
        value = model.get(key)
        if value is not None and (not _is_int(value) or value < 1):
            raise _fail(f"model.{key}", value, "an integer >= 1")
    level = model.get("ci_level", 0.95)
    if not (_is_number(level) and 0 < level < 1):
        raise _fail("model.ci_level", level, "a number in (0, 1), e.g. 0.95")
    tol = model.get("tol")
    if tol is not None and (not _is_number(tol) or tol < 0):
        raise _fail("model.tol", tol, "a number >= 0")
    if optimizer == "lbfgs":
        cannot = {
            "l1_ratio": "L1 needs a proximal or orthant-wise solver: use model.optimizer=sgd",
            "weight_decay": "L-BFGS takes none: model.C sets the L2 penalty",
        }
        for key, why in cannot.items():
            if model.get(key):
                raise _fail(f"model.{key}", model.get(key), f"null or 0 with lbfgs ({why})")


def check_class_weight(weight: Any, num_classes: int) -> None:
    """A list of class weights must give one weight per label of the data."""
    if (OmegaConf.is_list(weight) or isinstance(weight, list)) and len(weight) != num_classes:
        raise _fail(
            "model.class_weight",
            list(weight),
            f"one weight per label: the data has {num_classes} labels",
        )


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """instantiate(node), with the errors of a bad config value turned into LrexpError.

    Hydra wraps whatever a target raises in InstantiationException: lrexp's own LrexpError is
    unwrapped, and a library's rejection of a value the user set (Lightning's Trainer, loggers,
    callbacks) becomes one naming `key`. Errors inside lrexp's own classes stay bugs, except an
    unknown argument (`+model.foo=1`).
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, LrexpError):
            raise cause from None
        rejected = (MisconfigurationException, ValueError, TypeError, ImportError)
        library = not str(node.get("_target_", "")).startswith("lrexp.")
        if (library and isinstance(cause, rejected)) or "unexpected keyword argument" in str(cause):
            raise LrexpError(f"{key}: {cause}") from None
        raise


def build_group(cfg: DictConfig, group: str) -> list[Any]:
    """Every entry of a dict-valued group (logger, callbacks), built; an entry may build a list
    of objects (lrexp.callbacks) or none; an empty group gives []."""
    built = []
    for key, node in (cfg.get(group) or {}).items():
        made = build(node, f"{group}.{key}")
        built.extend(made if isinstance(made, list) else [made])
    return built


def _check_accelerator(trainer: DictConfig) -> None:
    accelerator = str(trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise LrexpError(
                f"trainer.accelerator={accelerator} but this machine has no CUDA device. "
                f"Run on the CPU instead: {_cpu_command()}"
            )


def _cpu_command() -> str:
    """The command the user typed, with the GPU trainer choices swapped for trainer=cpu."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "python -m lrexp.train trainer=cpu"
    hydra_cfg = HydraConfig.get()
    kept = [
        o
        for o in OmegaConf.to_container(hydra_cfg.overrides.task)
        if not o.startswith(("trainer=", "trainer.accelerator", "trainer.devices"))
    ]
    return " ".join([f"python -m lrexp.{hydra_cfg.job.name}", "trainer=cpu", *kept])
