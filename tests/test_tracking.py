"""logger=mlflow against a real MLflow tracking server (started here, on 127.0.0.1), and the
default local store under outputs/."""

from __future__ import annotations

import http.server
import json
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lrexp.errors import LrexpError
from lrexp.tracking import MLFlowLogger, check_tracking
from lrexp.train import main
from tests.conftest import run_entry

TOY = ("data=toy", "model.lr=0.1", "trainer.enable_progress_bar=false", "logger=mlflow")
SERVER_START_S = 180  # a cold start creates the database schema: about 30 s on 2 cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` from this interpreter's environment, on a free port; its URI."""
    root = tmp_path_factory.mktemp("mlflow_server")
    mlflow = Path(sys.executable).parent / "mlflow"
    for attempt in range(3):  # another process may take the free port before the server does
        port = free_port()
        command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
        command += ["--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
        log = (root / f"server{attempt}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_S
            uri = f"http://127.0.0.1:{port}"
            while process.poll() is None and time.monotonic() < deadline:
                if answers(f"{uri}/health"):
                    yield uri
                    return
                time.sleep(0.5)
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
    pytest.fail(f"mlflow server did not start; see {root}/server*.log")


def runs_tagged(client: MlflowClient, tag: str, value: str) -> list[Run]:
    experiment = client.get_experiment_by_name("lrexp.train")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{tag}` = '{value}'")


def test_a_run_sends_params_curves_and_artifacts(server: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = (f"logger.mlflow.tracking_uri={server}", "trainer.max_epochs=100")
    assert run_entry(main, *TOY, *overrides, f"hydra.run.dir={run_dir}") == 0
    client = MlflowClient(server)
    (run,) = runs_tagged(client, "lrexp.run_dir", str(run_dir))
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"{tmp_path.name}/run"
    params = run.data.params
    assert params["model/lr"] == "0.1"
    assert params["trainer/max_epochs"] == "100"
    assert params["data/_target_"] == "lrexp.data.toy.ToyDataModule"
    train_loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in train_loss) == list(range(100))  # one point per epoch
    val_loss = client.get_metric_history(run.info.run_id, "val/loss")
    assert sorted(m.step for m in val_loss) == [49, 99]  # the toy validates every 50th epoch

    def listed(path: str | None = None) -> set[str]:
        return {a.path for a in client.list_artifacts(run.info.run_id, path)}

    assert {"metrics.json", "figures", "checkpoints", ".hydra"} <= listed()
    assert "figures/decision_curve.png" in listed("figures")
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert listed("checkpoints") == {f"checkpoints/{best.name}"}
    downloaded = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(downloaded).read_text()) == json.loads(
        (run_dir / "metrics.json").read_text()
    )


def test_a_sweep_gives_one_named_run_per_job(server: str, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    overrides = (f"logger.mlflow.tracking_uri={server}", "trainer.max_epochs=10")
    args = ("-m", *TOY, *overrides, "model.lr=0.1,0.2", f"hydra.sweep.dir={sweep_dir}")
    assert run_entry(main, *args) == 0
    runs = runs_tagged(MlflowClient(server), "lrexp.sweep_dir", str(sweep_dir))
    by_name = {run.info.run_name: run.data.params["model/lr"] for run in runs}
    assert by_name == {f"{tmp_path.name}/sweep/0": "0.1", f"{tmp_path.name}/sweep/1": "0.2"}


def test_a_server_that_does_not_answer_stops_the_run_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run_dir = tmp_path / "run"
    args = (*TOY, f"logger.mlflow.tracking_uri={uri}", f"hydra.run.dir={run_dir}")
    assert run_entry(main, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lrexp: error: logger.mlflow.tracking_uri={uri}: no tracking server")
    assert len(err.splitlines()) == 1
    assert not list(run_dir.glob("*"))  # stopped before the run dir was claimed


class AnswersEverything(http.server.BaseHTTPRequestHandler):
    """A web server that is not MLflow's: 200 and a page to every GET."""

    def do_GET(self) -> None:
        body = b"<html><body>hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    """A plain http.server on 127.0.0.1 that answers 200 to everything; its URI."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), AnswersEverything)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def test_a_server_that_is_not_mlflows_stops_the_run_in_one_line(
    web_server: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with urllib.request.urlopen(f"{web_server}/health", timeout=5) as response:
        assert response.status == 200  # it does answer HTTP
    run_dir = tmp_path / "run"
    args = (*TOY, f"logger.mlflow.tracking_uri={web_server}", f"hydra.run.dir={run_dir}")
    assert run_entry(main, *args) == 2
    err = capsys.readouterr().err.strip()
    prefix = f"lrexp: error: logger.mlflow.tracking_uri={web_server}: the server there is not"
    assert err.startswith(prefix), err
    assert len(err.splitlines()) == 1
    assert not list(run_dir.glob("*"))


def test_an_mlflow_server_passes_the_check(server: str) -> None:
    logger = MLFlowLogger(tracking_uri=server)
    try:
        check_tracking([logger])  # raises LrexpError otherwise
    finally:
        logger.close()


def command(*overrides: str) -> subprocess.CompletedProcess:
    """`python -m lrexp.train` as a user runs it: the process must end once the run ends (the
    logger's worker thread must not keep it waiting)."""
    args = [sys.executable, "-m", "lrexp.train", *TOY, *overrides]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def test_the_default_store_lies_under_the_log_dir(tmp_path: Path) -> None:
    log_dir = tmp_path / "outputs"
    run_dir = log_dir / "run"
    result = command(
        "trainer.max_epochs=10", f"paths.log_dir={log_dir}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(f"sqlite:///{log_dir / 'mlflow.db'}")
    (run,) = runs_tagged(client, "lrexp.run_dir", str(run_dir))
    assert run.info.status == "FINISHED"
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(log_dir / "mlartifacts")
    assert (artifacts / "metrics.json").read_bytes() == (run_dir / "metrics.json").read_bytes()
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 10


def test_a_run_that_stops_before_training_ends_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    result = command(f"paths.log_dir={tmp_path}", f"ckpt_path={missing}")
    assert result.returncode == 2
    assert str(missing) in result.stderr


def test_the_logger_sends_from_its_child_and_its_client_reads_back(tmp_path: Path) -> None:
    logger = MLFlowLogger(f"sqlite:///{tmp_path / 'mlflow.db'}", local_artifacts=str(tmp_path))
    _ = logger.experiment  # as Lightning touches it at setup: no client made yet
    logger.log_hyperparams({"model/lr": 0.1})
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
    logger.save()
    logger.finalize("success")
    logger.close()  # as a run's end does: waits for every request
    assert logger.version == logger.run_id
    run = logger.experiment.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model/lr": "0.1"}
    history = logger.experiment.get_metric_history(logger.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_a_store_mlflow_cannot_open_fails_in_one_line(tmp_path: Path) -> None:
    logger = MLFlowLogger("bogus://nowhere")
    logger.log_metrics({"train/loss": 1.0}, 0)
    with pytest.raises(LrexpError, match=r"^logger=mlflow: .*bogus"):
        logger.finalize("failed")  # waits, as its process is about to end


def test_a_copy_in_another_process_logs_through_a_child_of_its_own(tmp_path: Path) -> None:
    """ddp_spawn pickles the Trainer's loggers into the processes it starts."""
    logger = MLFlowLogger(f"sqlite:///{tmp_path / 'mlflow.db'}", local_artifacts=str(tmp_path))
    first_run = (
        logger.run_id
    )  # the store exists (MLflow cannot create one SQLite store twice at once)
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"train/loss": 0.5}, 0)
    copy.finalize("success")
    copy.close()
    history = copy.experiment.get_metric_history(copy.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5)]
    assert copy.run_id != first_run  # its own run, which its own child made
    logger.close()


def test_a_finished_run_leaves_no_mlflow_process(tmp_path: Path) -> None:
    """In a notebook (lrexp.run) the interpreter outlives the run: its child must not."""
    overrides = ("trainer.max_epochs=3", f"paths.log_dir={tmp_path}", f"hydra.run.dir={tmp_path}/r")
    before = set(multiprocessing.active_children())
    assert run_entry(main, *TOY, *overrides) == 0
    started = set(multiprocessing.active_children()) - before
    assert not [p for p in started if p.name == "lrexp-mlflow"]
