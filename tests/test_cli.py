"""Every anticipated bad input: a short message naming the key or path, exit 2, no traceback, and
an earlier run's files in the same run dir left byte for byte as they were."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from lrexp import baseline, predict, train
from lrexp import eval as eval_
from tests.conftest import run_entry, write_mnist_like

MNIST_FILES = ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FAST = ("trainer.max_epochs=1", "trainer.enable_progress_bar=false")
ENTRY_POINTS = {
    "train": train.main,
    "eval": eval_.main,
    "predict": predict.main,
    "baseline": baseline.main,
}


class Payload:
    """A pickle that would create a file if anything unpickled it without weights_only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fabricated MNIST (whole, truncated, partial), one finished MNIST run in run/, a corrupt
    and a malicious checkpoint, and a digit image."""
    root = tmp_path_factory.mktemp("site")
    raw = write_mnist_like(root / "good" / "MNIST" / "raw")
    shutil.copytree(raw, root / "truncated" / "MNIST" / "raw")
    images = root / "truncated" / "MNIST" / "raw" / MNIST_FILES[0]
    images.write_bytes(images.read_bytes()[:-100])
    partial = root / "partial" / "MNIST" / "raw"
    partial.mkdir(parents=True)
    shutil.copy(raw / MNIST_FILES[0], partial)
    run = root / "run"
    overrides = ("data=mnist", f"paths.data_dir={root / 'good'}", f"hydra.run.dir={run}", *FAST)
    assert run_entry(train.main, *overrides) == 0
    last = (run / "checkpoints" / "last.ckpt").read_bytes()
    (root / "corrupt.ckpt").write_bytes(last[: len(last) // 2])
    torch.save({"state_dict": {}, "payload": Payload(root / "pwned")}, root / "malicious.ckpt")
    Image.new("L", (28, 28)).save(root / "digit.png")
    return root


TRAIN = ("data=mnist", "paths.data_dir={site}/good", *FAST)
CKPT = "ckpt_path={site}/run/checkpoints/last.ckpt"

# (entry point, overrides, what the message must name); every bad run is pointed at the
# earlier run's dir with hydra.run.dir.
BAD_INPUTS = [
    ("train", [*TRAIN, "model.lr=-1"], "model.lr=-1"),
    ("train", [*TRAIN, "model.lr=fast"], "model.lr='fast'"),  # an override of the wrong type
    ("train", [*TRAIN, "model.reduction=avg"], "model.reduction='avg'"),
    ("train", [*TRAIN, "data.batch_size=0"], "data.batch_size=0"),
    ("train", [*TRAIN, "data.val_fraction=1.0"], "data.val_fraction=1.0"),
    ("train", [*TRAIN, "data.positive=[]"], "data.positive is empty"),
    ("train", [*TRAIN, "data.positive=[zebra]"], "data.positive holds unknown class 'zebra'"),
    ("train", [*TRAIN, "data.positive=[3]", "data.negative=[3,8]"], "data.positive and data.neg"),
    ("train", [*TRAIN, "data.negative=[3,8]"], "data.negative is set but data.positive is null"),
    ("train", [*TRAIN, "trainer.max_epochs=0"], "trainer.max_epochs=0"),
    ("train", [*TRAIN, "model.optimizer=rmsprop"], "model.optimizer='rmsprop'"),
    ("train", [*TRAIN, "model.scheduler=step"], "model.scheduler='step'"),
    ("train", [*TRAIN, "model.C=0"], "model.C=0 is not allowed"),
    ("train", [*TRAIN, "model.C=strong"], "model.C='strong' is not allowed"),
    ("train", [*TRAIN, "model.l1_ratio=1.5"], "model.l1_ratio=1.5 is not allowed"),
    ("train", [*TRAIN, "model.class_weight=[1,2,3]"], "model.class_weight=[1, 2, 3]"),
    ("train", [*TRAIN, "model.class_weight=[1,-1]"], "model.class_weight=[1, -1]"),
    ("train", [*TRAIN, "model.class_weight=heavy"], "model.class_weight='heavy'"),
    (
        "train",
        [*TRAIN, "model.optimizer=lbfgs", "model.weight_decay=0.1"],
        "model.weight_decay=0.1",
    ),
    ("train", [*TRAIN, "model.optimizer=lbfgs", "model.l1_ratio=1"], "model.l1_ratio=1"),
    ("train", [*TRAIN, "data.classes=[1,1,2]"], "data.classes lists class 1 twice"),
    ("train", [*TRAIN, "data.classes=[zebra,1,2]"], "data.classes holds unknown class 'zebra'"),
    ("train", [*TRAIN, "data.classes=[1,2]"], "data.classes lists 2 class(es)"),
    ("train", [*TRAIN, "data.classes=all", "data.positive=[3]"], "data.classes and data.positive"),
    ("train", [*TRAIN, "seed=-1"], "seed=-1"),
    ("train", [*TRAIN, "trainer.accelerator=gpu"], "trainer.accelerator=gpu"),
    ("train", [*TRAIN, "trainer.devices=0"], "trainer: `Trainer(devices=0)`"),  # Lightning's
    ("train", [*TRAIN, "+model.momentum_typo=0.9"], "'momentum_typo'"),
    ("train", [*TRAIN, "ckpt_path=nowhere.ckpt"], "ckpt_path=nowhere.ckpt"),
    ("train", [*TRAIN, "ckpt_path={site}/corrupt.ckpt"], "corrupt.ckpt is not a readable"),
    ("train", [*TRAIN, "ckpt_path={site}/malicious.ckpt"], "only load files you trust"),
    ("train", ["data=toy", "ckpt_path=last"], "checkpoints/last.ckpt does not fit"),
    ("train", [*TRAIN, "paths.data_dir={site}/truncated"], f"{MNIST_FILES[0]} holds"),
    ("train", [*TRAIN, "paths.data_dir={site}/partial"], "missing in {site}/partial/MNIST/raw"),
    ("train", [*TRAIN], "hydra.run.dir={site}/run already holds a run"),  # a good config
    ("train", [*TRAIN, "data=imagenet"], "Could not find 'data/imagenet'"),  # Hydra's own
    ("train", [*TRAIN, "learning_rate=0.1"], "Could not override 'learning_rate'"),  # Hydra's
    ("eval", [], "ckpt_path is missing"),
    ("eval", ["ckpt_path={site}/corrupt.ckpt"], "corrupt.ckpt is not a readable"),
    ("eval", ["ckpt_path={site}/malicious.ckpt"], "only load files you trust"),
    ("eval", [CKPT, "data=toy"], "takes 784 features but this data config gives 1"),
    ("eval", [CKPT], "hydra.run.dir={site}/run already holds a run"),
    (
        "eval",
        [CKPT, "data=mnist", "paths.data_dir={site}/good", "data.classes=all"],
        "data.classes: ckpt_path={site}/run/checkpoints/last.ckpt was trained on classes",
    ),
    ("predict", [CKPT], "inputs is missing"),
    ("predict", [CKPT, "inputs={site}/none*.png"], "none*.png' matches no file"),
    ("predict", [CKPT, "inputs={site}/corrupt.ckpt"], "cannot read {site}/corrupt.ckpt"),
    ("predict", [CKPT, "inputs={site}/digit.png"], "hydra.run.dir={site}/run already holds"),
    ("baseline", [*TRAIN, "sklearn.C=-1"], "sklearn: The 'C' parameter"),
]


def case_id(entry: str, overrides: list[str]) -> str:
    own = " ".join(o.replace("{site}/", "") for o in overrides if o not in TRAIN)
    return f"{entry}: {own or '(nothing else)'}"


@pytest.mark.parametrize(
    ("entry", "overrides", "named"), BAD_INPUTS, ids=[case_id(e, o) for e, o, _ in BAD_INPUTS]
)
def test_bad_input_stops_with_a_message_and_leaves_the_earlier_run_intact(
    site: Path, entry: str, overrides: list[str], named: str, capsys: pytest.CaptureFixture
) -> None:
    run = site / "run"
    before = snapshot(run)
    capsys.readouterr()
    arguments = [o.format(site=site) for o in overrides]
    code = run_entry(ENTRY_POINTS[entry], *arguments, f"hydra.run.dir={run}")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert named.format(site=site) in err
    if "lrexp: error:" in err:  # Hydra's own messages (which list the options) are kept as they are
        assert len(err[err.index("lrexp: error:") :].strip().splitlines()) == 1
    assert snapshot(run) == before
    assert not (site / "pwned").exists()


def test_last_needs_a_last_checkpoint_in_the_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_entry(train.main, "ckpt_path=last", f"hydra.run.dir={tmp_path}") == 2
    err = capsys.readouterr().err
    assert f"ckpt_path=last: {tmp_path}/checkpoints/last.ckpt does not exist" in err
    assert not list(tmp_path.rglob("*"))


def test_a_diverging_run_names_the_epoch_and_keeps_a_finite_checkpoint(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The loss is computed from logits, so model.lr=1e30 stays finite; 1e38 overflows float32.
    run = tmp_path / "run"
    overrides = ("data=mnist", f"paths.data_dir={site / 'good'}", f"hydra.run.dir={run}")
    diverging = (
        "model.optimizer=sgd",
        "trainer.max_epochs=5",
        "trainer.check_val_every_n_epoch=1",
        "model.lr=1e38",
    )
    code = run_entry(train.main, *overrides, *diverging, "logger=none")
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "training diverged in epoch 1" in err and "model.lr" in err
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert not (run / "metrics.json").exists()


def test_resuming_the_run_in_its_own_dir_is_allowed(site: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(site / "run", run)
    overrides = ("data=mnist", f"paths.data_dir={site / 'good'}", f"hydra.run.dir={run}")
    code = run_entry(train.main, *overrides, "ckpt_path=last", "trainer.max_epochs=2")
    assert code == 0
    assert json.loads((run / "metrics.json").read_text())["val/acc"] > 0.5
    assert "max_epochs: 2" in (run / ".hydra" / "config.yaml").read_text()


def test_resuming_another_dirs_checkpoint_in_a_new_dir_leaves_that_dir_intact(
    site: Path, tmp_path: Path
) -> None:
    before = snapshot(site / "run")
    overrides = ("data=mnist", f"paths.data_dir={site / 'good'}", f"hydra.run.dir={tmp_path}")
    code = run_entry(train.main, *overrides, CKPT.format(site=site), "trainer.max_epochs=3")
    assert code == 0
    assert (tmp_path / "metrics.json").is_file()
    assert snapshot(site / "run") == before


def test_the_real_cli_maps_a_hydra_error_to_exit_2(tmp_path: Path) -> None:
    """A real process (test_train covers an lrexp error the same way): no traceback, no files."""
    proc = subprocess.run(
        [sys.executable, "-m", "lrexp.train", "data=imagenet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Could not find 'data/imagenet'" in proc.stderr
    assert not list(tmp_path.rglob("*"))


@pytest.mark.parametrize(("exit_with", "code"), [("None", 0), ("2", 2), ("'a message'", 1)])
def test_run_as_command_ends_like_a_normal_exit(tmp_path: Path, exit_with: str, code: int) -> None:
    """run_as_command skips only the interpreter's teardown: the exit status, the flushed streams,
    a still-running thread's work and the atexit handlers are those of a normal exit."""
    script = f"""
import atexit, threading, time
from pathlib import Path
from lrexp.cli import run_as_command

def main():
    atexit.register(lambda: Path("atexit.txt").write_text("ran"))
    threading.Thread(target=lambda: (time.sleep(0.5), Path("thread.txt").write_text("ran"))).start()
    print("to stdout", end="")
    raise SystemExit({exit_with})

run_as_command(main)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "to stdout"
    assert ("a message" in proc.stderr) == (code == 1)
    assert (tmp_path / "atexit.txt").read_text() == (tmp_path / "thread.txt").read_text() == "ran"


def test_ctrl_c_ends_with_status_130_and_says_how_to_resume(tmp_path: Path) -> None:
    """SIGINT during training: Lightning's graceful shutdown, then one line naming the resume
    command and the shell's status for SIGINT (130), not 1 (a bug)."""
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lrexp.train",
        "trainer.max_epochs=1000000",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in stderr.splitlines() if line.startswith("lrexp:")]
    assert len(lines) == 1
    assert f"resume with the same command plus hydra.run.dir={run_dir} ckpt_path=last" in lines[0]
    assert "Traceback" not in stderr
