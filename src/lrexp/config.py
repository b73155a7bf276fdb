"""Check a composed config before anything is instantiated or written.

Hydra already rejects unknown groups and keys; this catches wrong types and impossible values,
naming the key, the value and what is allowed.
"""

from __future__ import annotations

from numbers import Real

from omegaconf import DictConfig, OmegaConf

from lrexp.errors import LrexpError


def _fail(key: str, value: object, allowed: str) -> LrexpError:
    return LrexpError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig) -> None:
    """Raise LrexpError for the first bad value found."""
    seed = cfg.get("seed")
    if seed is not None and not _is_int(seed):
        raise _fail("seed", seed, "an integer, or null for a random seed")

    model = cfg.get("model") or {}
    lr = model.get("lr")
    if lr is not None and (not isinstance(lr, Real) or isinstance(lr, bool) or not lr > 0):
        raise _fail("model.lr", lr, "a positive number, e.g. model.lr=0.01")
    reduction = model.get("reduction")
    if reduction is not None and reduction not in ("mean", "sum"):
        raise _fail("model.reduction", reduction, "mean or sum")
    for key in ("weight_decay", "momentum"):
        value = model.get(key)
        if value is not None and (not isinstance(value, Real) or value < 0):
            raise _fail(f"model.{key}", value, "a number >= 0")

    data = cfg.get("data") or {}
    batch_size = data.get("batch_size")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise _fail("data.batch_size", batch_size, "an integer >= 1")
    per_fetch = data.get("batches_per_fetch")
    if per_fetch is not None and (not _is_int(per_fetch) or per_fetch < 1):
        raise _fail("data.batches_per_fetch", per_fetch, "an integer >= 1")
    val_fraction = data.get("val_fraction")
    if val_fraction is not None and (
        not isinstance(val_fraction, Real) or not 0 <= val_fraction < 1
    ):
        raise _fail("data.val_fraction", val_fraction, "a number in [0, 1), e.g. 0.1")

    trainer = cfg.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and (not _is_int(max_epochs) or max_epochs < 1):
        raise _fail("trainer.max_epochs", max_epochs, "an integer >= 1")
    _check_accelerator(trainer)


def _check_accelerator(trainer: DictConfig) -> None:
    accelerator = str(trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise LrexpError(
                f"trainer.accelerator={accelerator} but this machine has no CUDA device. "
                "Run on the CPU instead: python -m lrexp.train trainer=cpu "
                + " ".join(_user_overrides_without_gpu())
            )


def _user_overrides_without_gpu() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task)
    return [
        o
        for o in overrides
        if not o.startswith(("trainer=", "trainer.accelerator", "trainer.devices"))
    ]
