"""Checkpoints: which file a command means, loading it safely, and rebuilding the model and its
data from it (train's resume and best-checkpoint test, eval, predict, export).

Checkpoints are pickles: lrexp unpickles them with weights_only=True (tensors and plain values
only), so a crafted file is refused, not run.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lrexp.config import build
from lrexp.data.checkpoint_name import DATAMODULE_CLASS_KEY
from lrexp.errors import LrexpError

CHECKPOINT_DIR = "checkpoints"
DATAMODULE_HPARAMS_KEY = L.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` → this run dir's checkpoints/last.ckpt; a path must name an existing file."""
    if ckpt_path is None:
        return None
    path = run_dir / CHECKPOINT_DIR / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = (
            "pass hydra.run.dir=<the run's dir> with ckpt_path=last"
            if ckpt_path == "last"
            else "give the path of an existing .ckpt file"
        )
        raise LrexpError(f"ckpt_path={ckpt_path}: {path} does not exist; {hint}")
    return str(path)


def continues_run(ckpt_path: str | None, run_dir: Path) -> bool:
    """Whether this run resumes the run that lives in run_dir (its checkpoint lies there)."""
    return ckpt_path is not None and (
        Path(ckpt_path).resolve().parent == (run_dir / CHECKPOINT_DIR).resolve()
    )


def checkpoint_path(cfg: DictConfig, command: str) -> Path:
    """The existing file that cfg.ckpt_path names (eval, predict, export)."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or cfg.ckpt_path is None:
        raise LrexpError(
            f"ckpt_path is missing: python -m lrexp.{command} "
            "ckpt_path=outputs/DATE/TIME/checkpoints/last.ckpt"
        )
    path = Path(cfg.ckpt_path)
    if path.is_dir():
        inside = [
            p for p in (path / "last.ckpt", path / CHECKPOINT_DIR / "last.ckpt") if p.is_file()
        ]
        raise LrexpError(
            f"ckpt_path={cfg.ckpt_path} is a directory; "
            + (
                f"did you mean ckpt_path={inside[0]}?"
                if inside
                else "give the path of a .ckpt file"
            )
        )
    if not path.is_file():
        raise LrexpError(f"ckpt_path={cfg.ckpt_path}: no such file; give the path of a .ckpt file")
    return path


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """A checkpoint's contents, unpickled with weights_only=True. Any file that is not a
    Lightning checkpoint is an LrexpError naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise LrexpError(
            f"{key}={path} holds pickled objects besides tensors and plain values "
            f"({found[1] if found else 'not a checkpoint lrexp wrote'}), which lrexp does not "
            "unpickle (weights_only=True): only load files you trust"
        ) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... for bad bytes
        detail = str(err).splitlines()[0].split(". ")[0] if str(err) else "no data"
        raise LrexpError(
            f"{key}={path} is not a readable checkpoint ({type(err).__name__}: {detail}): "
            "it may be truncated or corrupt"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise LrexpError(f"{key}={path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_checkpoint_fits(
    checkpoint: dict[str, Any],
    model: nn.Module,
    path: str | Path,
    datamodule: L.LightningDataModule | None = None,
    key: str = "ckpt_path",
) -> None:
    """Stop before training if the checkpoint's tensors do not fit the configured model, e.g. a
    model trained on 784 features (MNIST) resumed or tested with data=toy (1 feature); with the
    set-up `datamodule` (a resume), also if its data are not those the checkpoint was trained
    on (`check_same_data`)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
    if found.keys() != expected.keys():
        raise LrexpError(
            f"{key}={path} holds parameters {sorted(found)}, but the model needs {sorted(expected)}"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise LrexpError(
                f"{key}={path} does not fit this config: its {name} has shape {list(found[name])}, "
                f"the model here needs {list(shape)} (features and classes come from the data "
                "config): pass the data config the checkpoint was trained with"
            )
    if datamodule is not None:
        check_same_data(checkpoint, datamodule, path, key)


def check_same_data(
    checkpoint: dict[str, Any], datamodule: L.LightningDataModule, path: str | Path, key: str
) -> None:
    """A resume goes on training the checkpoint's weights, which mean something only on the data
    they were trained on: the same DataModule class, eval's rule (features, classes,
    normalize) and the same learned state (a table's columns, kinds, categories, labels and
    training statistics), which Lightning would otherwise load over this run's own."""
    cls = type(datamodule)
    name = f"{cls.__module__}.{cls.__qualname__}"
    trained = checkpoint.get(DATAMODULE_CLASS_KEY)
    if trained is not None and trained != name:
        raise LrexpError(
            f"{key}={path} was trained on {trained} data, this config gives {name}: pass the "
            "data config it was trained with, or start a new run without ckpt_path"
        )
    saved = checkpoint.get(DATAMODULE_HPARAMS_KEY, {})
    hp = checkpoint.get("hyper_parameters", {})
    _check_compatible(datamodule, hp, saved, Path(path), "or start a new run without ckpt_path")
    state, ours = checkpoint.get(cls.__qualname__) or {}, datamodule.state_dict()
    # In the state's own order: what the data are (columns, labels) before their statistics.
    for entry in [*state, *(k for k in ours if k not in state)]:
        if not _same(state.get(entry), ours.get(entry)):
            raise LrexpError(
                f"{key}={path} was trained on other data: its {entry!r} is "
                f"{_shown(state.get(entry))}, these data give {_shown(ours.get(entry))} (a "
                "changed file, split or seed changes them); resume with the data it was trained "
                "on, or start a new run without ckpt_path"
            )


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and torch.equal(a.cpu().to(b.dtype), b.cpu())
        )
    return a == b


def _shown(value: object) -> str:
    text = repr(value.tolist() if isinstance(value, torch.Tensor) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def restore(cfg: DictConfig, path: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The checkpoint's model, and its DataModule (or cfg.data's, when `data=NAME` was given),
    with the training run's preprocessing state."""
    from lrexp.model import LogisticRegression

    checkpoint = load_checkpoint(path)
    try:
        model = LogisticRegression(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        raise LrexpError(f"ckpt_path={path} is not an lrexp checkpoint ({err!r})") from None
    model.eval()
    saved = checkpoint.get(DATAMODULE_HPARAMS_KEY, {})
    data = cfg.get("data")
    if data is not None and "_target_" in data:
        datamodule = build(data, "data")
    else:
        # No data=NAME: the checkpoint's own data, with any ++data.KEY=VALUE given over them.
        changes = OmegaConf.to_container(data, resolve=True) if data is not None else {}
        datamodule = _rebuilt_datamodule(_datamodule_class(checkpoint, path), saved, changes)
    if state := checkpoint.get(type(datamodule).__qualname__):
        datamodule.load_state_dict(state)
    if data is not None:
        _check_compatible(datamodule, model.hparams, saved, path)
    return model, datamodule


def _rebuilt_datamodule(
    cls: type[L.LightningDataModule], saved: dict[str, Any], changes: dict[str, Any]
) -> L.LightningDataModule:
    """The training run's DataModule, with `changes` (++data.KEY=VALUE) over its settings."""
    options = inspect.signature(cls).parameters
    if unknown := sorted(set(changes) - set(options)):
        raise LrexpError(
            f"data.{unknown[0]} is not a setting of this checkpoint's data ({cls.__name__}); "
            f"its settings: {', '.join(n for n in options if n not in ('self', 'kwargs'))}"
        )
    return cls(**(dict(saved) | changes))


def _datamodule_class(checkpoint: dict[str, Any], path: Path) -> type[L.LightningDataModule]:
    """The run's DataModule class; only lrexp's own are imported, whatever the file says."""
    name = checkpoint.get(DATAMODULE_CLASS_KEY)
    module, _, qualname = (name or "").rpartition(".")
    if not module.startswith("lrexp.data."):
        raise LrexpError(
            f"ckpt_path={path} does not name lrexp data ({name!r}): choose them with data=NAME"
        )
    try:
        cls = getattr(importlib.import_module(module), qualname, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningDataModule)):
        raise LrexpError(
            f"ckpt_path={path} names unknown data {name!r}: choose them with data=NAME"
        )
    return cls


def _check_compatible(
    datamodule: L.LightningDataModule,
    hp: dict[str, Any],
    saved: dict,
    path: Path,
    otherwise: str = "or leave data= out",
) -> None:
    """Given data must give the model's features and classes (`hp`: the model's
    hyper-parameters), preprocessed as in training (`saved`: the DataModule's); `otherwise` is
    the message's other way out."""
    if datamodule.in_features != hp.get("in_features"):
        raise LrexpError(
            f"ckpt_path={path} takes {hp.get('in_features')} features but this data config "
            f"gives {datamodule.in_features}: choose the data it was trained on, {otherwise}"
        )
    trained = list(hp.get("class_names") or [])
    given = list(datamodule.label_names)
    if trained and given != trained:
        raise LrexpError(
            f"data.classes: ckpt_path={path} was trained on classes {trained}, this data config "
            f"gives {given}: choose the same classes, {otherwise}"
        )
    normalize = datamodule.hparams.get("normalize")
    if normalize != saved.get("normalize"):
        raise LrexpError(
            f"data.normalize={normalize} but ckpt_path={path} was trained with "
            f"data.normalize={saved.get('normalize')}: set it the same, {otherwise}"
        )
