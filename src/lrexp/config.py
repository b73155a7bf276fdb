"""Check a composed config before anything is instantiated or written.

Hydra already rejects unknown groups and keys; this catches wrong types and impossible values,
naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lrexp.errors import LrexpError


def _fail(key: str, value: object, allowed: str) -> LrexpError:
    return LrexpError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_config(cfg: DictConfig) -> None:
    """Raise LrexpError for the first bad value found."""
    seed = cfg.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed < 2**32):
        raise _fail("seed", seed, "an integer in [0, 2**32), or null for a random seed")

    model = cfg.get("model") or {}
    lr = model.get("lr")
    if lr is not None and (not _is_number(lr) or not lr > 0):
        raise _fail("model.lr", lr, "a positive number, e.g. model.lr=0.01")
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
    per_fetch = data.get("minibatches_per_step")
    if per_fetch is not None and (not _is_int(per_fetch) or per_fetch < 1):
        raise _fail("data.minibatches_per_step", per_fetch, "an integer >= 1")
    val_fraction = data.get("val_fraction")
    if val_fraction is not None and (not _is_number(val_fraction) or not 0 <= val_fraction < 1):
        raise _fail("data.val_fraction", val_fraction, "a number in [0, 1), e.g. 0.1")

    trainer = cfg.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and (not _is_int(max_epochs) or max_epochs < 1):
        raise _fail("trainer.max_epochs", max_epochs, "an integer >= 1")
    _check_accelerator(trainer)

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not isinstance(ckpt_path, str):
        raise _fail("ckpt_path", ckpt_path, "the path of a .ckpt file, or last")


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
    """Every entry of a dict-valued group (logger, callbacks), built; an empty group gives []."""
    return [build(node, f"{group}.{key}") for key, node in (cfg.get(group) or {}).items()]


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
