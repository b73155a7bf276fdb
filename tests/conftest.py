"""Shared fixtures: tiny datasets in torchvision's exact raw formats, and in-process entry runs.

torchvision cannot download here, so the tests write IDX files (MNIST, Fashion-MNIST) and
pickled batches (CIFAR-10) themselves and read them back through the real loaders.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import pickle
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger

from lrexp.data.cifar10 import CIFAR10DataModule
from lrexp.data.mnist import RAW_FILES

N_TRAIN, N_TEST = 200, 100
FAINT = 8  # a faint image's class pattern: 0 to 7 brighter than its noise (0 to 59)


def synthetic_images(
    n: int, shape: tuple[int, ...], seed: int, faint: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is visible in their brightness pattern, so a linear model learns it:
    clearly, or (faint) barely, with a random brightness per image, so that a small model
    errs on some test images and its AUROC, F1 and calibration are not those of a perfect
    one."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, size=(n, *shape), dtype=np.uint8)
    flat = images.reshape(n, -1)
    width = flat.shape[1] // 10
    brightness = rng.integers(0, FAINT, size=n) if faint else np.full(n, 150)
    for i, label in enumerate(labels):
        flat[i, label * width : (label + 1) * width] += np.uint8(brightness[i])
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uint8 IDX file: magic 0x0000 08 <ndim>, big-endian dims, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_like(raw_dir: Path, compress: bool = False, faint: bool = False) -> Path:
    """The four IDX files of MNIST/Fashion-MNIST (optionally .gz, as Debian ships them)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_images(N_TRAIN, (28, 28), seed=0, faint=faint)
    test_x, test_y = synthetic_images(N_TEST, (28, 28), seed=1, faint=faint)
    for name, array in zip(RAW_FILES, (train_x, train_y, test_x, test_y), strict=True):
        path = raw_dir / name
        write_idx(path, array)
        if compress:
            path.with_name(name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return raw_dir


def write_cifar10(root: Path) -> dict[str, str]:
    """cifar-10-batches-py with 5 train batches, a test batch and batches.meta; returns md5s."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": synthetic_images(40, (3, 32, 32), seed=i) for i in range(1, 6)}
    batches["test_batch"] = synthetic_images(N_TEST, (3, 32, 32), seed=9)
    for name, (images, labels) in batches.items():
        entry = {"data": images.reshape(len(images), -1), "labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    names = list(CIFAR10DataModule.class_names)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    write_mnist_like(tmp_path / "data" / "MNIST" / "raw")
    return tmp_path / "data"


@pytest.fixture
def fashion_root(tmp_path: Path) -> Path:
    write_mnist_like(tmp_path / "data" / "FashionMNIST" / "raw")
    return tmp_path / "data"


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fabricated CIFAR-10, with torchvision's md5 table patched to the fabricated files."""
    from torchvision.datasets import CIFAR10

    md5 = write_cifar10(tmp_path / "data")
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return tmp_path / "data"


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """Undo what a run does to this process that a command-line run leaves to the process's end:

    - the root logger's handlers: Hydra's console handler writes to the sys.stdout of its run
      (in a test, pytest's capture stream, closed after that test: a later log record gives
      "I/O operation on closed file"), and lrexp's <job>.log FileHandler stays open on the run
      dir; both are closed and the handlers from before are put back;
    - HydraConfig: Hydra sets it for the whole sweep (-m) and for --cfg, and never resets it,
      so a later in-process call would see the earlier run's mode and overrides;
    - os.environ: Lightning's seed_everything sets PL_GLOBAL_SEED and PL_SEED_WORKERS, and
      deterministic=True sets CUBLAS_WORKSPACE_CONFIG; every later subprocess would inherit them
      (and seed_everything(None) would read the leaked seed).
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    environ = dict(os.environ)
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        HydraConfig.instance().cfg = None
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)


@pytest.fixture(scope="session", autouse=True)
def _subprocesses_run_these_sources() -> Iterator[None]:
    """A `python -m lrexp.X` subprocess imports the lrexp these tests import, from any cwd.

    PYTHONPATH=src is relative: a subprocess started in a tmp dir would not find src/ and would
    import whatever lrexp the environment has installed (an editable install of another
    checkout, mid-edit), so its result depended on that other tree."""
    import sysconfig

    import lrexp

    source = str(Path(lrexp.__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if source == sysconfig.get_paths()["purelib"]:  # installed: every subprocess finds it
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([source, *paths]))
        yield


@pytest.fixture(autouse=True)
def _process_state_kept() -> Iterator[None]:
    """Every test leaves the process as it found it (see process_state_kept)."""
    with process_state_kept():
        yield


class RecordingLogger(Logger):
    """Keeps every (step, metrics) that lrexp hands to its loggers."""

    name, version = "recorder", 0

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.points.append((step, metrics))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def curve(self, key: str) -> dict[int, float]:
        return {step: m[key] for step, m in self.points if key in m}


def run_entry(main: Callable[[], None], *overrides: str) -> int:
    """Run an entry point's main() in this process with command-line overrides; return its exit
    status. In-process runs skip the ~10 s import of lightning that a subprocess pays. The run
    leaves no logging handler, Hydra state or environment variable behind, even when a session
    or module fixture makes it (outside any test's own clean-up)."""
    argv = sys.argv
    sys.argv = ["lrexp", *overrides]
    GlobalHydra.instance().clear()
    try:
        with process_state_kept():
            main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return 0


@pytest.fixture
def run_main() -> Callable[..., int]:
    return run_entry


@pytest.fixture(scope="session")
def trained_toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short toy run: 100 epochs at lr 0.1 (the lecture's 1000 at 0.01, roughly)."""
    from lrexp.train import main

    run_dir = tmp_path_factory.mktemp("trained_toy") / "run"
    overrides = ("data=toy", "model.lr=0.1", "trainer.max_epochs=100", f"hydra.run.dir={run_dir}")
    assert run_entry(main, *overrides) == 0
    return run_dir


@pytest.fixture(scope="session")
def trained_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs on fabricated MNIST with standardised features (statistics in the checkpoint)."""
    from lrexp.train import main

    root = tmp_path_factory.mktemp("trained_mnist")
    write_mnist_like(root / "data" / "MNIST" / "raw")
    overrides = (
        "data=mnist",
        f"paths.data_dir={root / 'data'}",
        "data.normalize=true",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        f"hydra.run.dir={root / 'run'}",
    )
    assert run_entry(main, *overrides) == 0
    return root / "run"


@pytest.fixture(scope="session")
def trained_ten_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Softmax regression over all ten classes of fabricated Fashion-MNIST."""
    from lrexp.train import main as train_main

    root = tmp_path_factory.mktemp("ten_classes")
    write_mnist_like(root / "data" / "FashionMNIST" / "raw")
    overrides = (
        "data=fashion_mnist",
        f"paths.data_dir={root / 'data'}",
        "data.system_dir=null",
        "data.classes=all",
        "trainer.max_epochs=5",
        "logger=none",
        f"hydra.run.dir={root / 'run'}",
    )
    assert run_entry(train_main, *overrides) == 0
    return root / "run"
