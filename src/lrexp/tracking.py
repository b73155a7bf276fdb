"""Experiment tracking beyond Lightning's loggers: MLflow runs named after their run dir, sent
from a child process; a check, before training starts, that the tracking server is an MLflow
server that answers; and the run's files uploaded as artifacts when it ends.

Lightning's MLFlowLogger sends the params (log_hyperparams) and the epoch curves (log_metrics);
what it does not send — metrics.json, figures/, the config and the best checkpoint — is
uploaded here, once the run dir holds them.
"""

from __future__ import annotations

import base64
import gc
import inspect
import json
import multiprocessing
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import mlflow as lightning_mlflow
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from lrexp.errors import LrexpError

REMOTE_SCHEMES = ("http://", "https://")
# Seconds to wait for a tracking server's answer: a server that is up answers /health at once;
# one that is down or unreachable must not keep the user waiting.
PROBE_TIMEOUT_S = 5.0
# The probe: MLflow's REST call that lists experiments; a server answers with a JSON object of
# these keys alone ({} when it has none).
SEARCH_EXPERIMENTS = "api/2.0/mlflow/experiments/search?max_results=1"
SEARCH_EXPERIMENTS_KEYS = {"experiments", "next_page_token"}
MAX_PROBE_BYTES = 1 << 20
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch request
CLOSE_TIMEOUT_S = 10.0  # an idle child ends at once when its pipe closes
# The child's scheduling priority below the run's (0 .. 19): where no core is free (torch's
# threads take them all), training goes first and the child takes what it leaves: the cores
# the run's single-threaded parts leave idle, and the run's waits.
CHILD_NICENESS = 19

Point = tuple[str, float, int, int]  # an epoch point: key, value, timestamp (ms), step


# The requests the run sends its child, each made there on Lightning's MLFlowLogger; every
# answer carries the run id, so CreateRun only creates the run.


@dataclass(frozen=True)
class CreateRun:
    def apply(self, logger: lightning_mlflow.MLFlowLogger) -> None:
        _ = logger.run_id


@dataclass(frozen=True)
class LogParams:
    params: dict[str, Any]

    def apply(self, logger: lightning_mlflow.MLFlowLogger) -> None:
        logger.log_hyperparams(self.params)


@dataclass(frozen=True)
class LogBatch:
    points: list[Point]

    def apply(self, logger: lightning_mlflow.MLFlowLogger) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(key=k, value=v, timestamp=t, step=n) for k, v, t, n in self.points]
        logger.experiment.log_batch(run_id=logger.run_id, metrics=metrics)


@dataclass(frozen=True)
class LogArtifact:
    """A file, or a folder's files, under `folder` in the run."""

    path: str
    folder: str | None
    is_dir: bool

    def apply(self, logger: lightning_mlflow.MLFlowLogger) -> None:
        upload = logger.experiment.log_artifacts if self.is_dir else logger.experiment.log_artifact
        upload(logger.run_id, self.path, self.folder)


@dataclass(frozen=True)
class Finalize:
    status: str

    def apply(self, logger: lightning_mlflow.MLFlowLogger) -> None:
        logger.finalize(self.status)


Request = CreateRun | LogParams | LogBatch | LogArtifact | Finalize


@dataclass(frozen=True)
class Answer:
    """The child's answer to one request: its error (None: done) and the run's id."""

    error: str | None
    run_id: str | None


class MLFlowLogger(Logger):
    """Lightning's MLFlowLogger, run in a child process, with lrexp's defaults
    (conf/logger/mlflow.yaml).

    - The child (MlflowChild) imports mlflow, opens the store and makes every request, in the
      order the run asks, on the cores training leaves: importing mlflow and opening a store
      cost about as much CPU as a short run's training, and each request is a database
      transaction. The run waits for the child at its end (lrexp.rundir.finish: log_artifacts,
      close) or when a stage fails; a request that failed raises then, or at a later request.
    - The epoch points are sent in one batch per checkpoint (`save`, which lrexp calls at every
      checkpoint) and at the end, not one request per epoch.
    - A local store (sqlite:///…) keeps its artifacts in `local_artifacts` (under outputs/, not
      MLflow's default ./mlruns beside the current directory); a server decides this itself.
    - run_name=None names the run after its run dir: the last two parts of Hydra's run dir
      (date/time), or for a job of a sweep (-m) the sweep dir's last two parts and the job
      number, so the runs of one sweep sort together; tags keep the full paths and the job's
      overrides.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str = "lrexp",
        run_name: str | None = None,
        local_artifacts: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        remote = tracking_uri.startswith(REMOTE_SCHEMES)
        name, hydra_tags = _hydra_run_name()
        self.settings = dict(
            experiment_name=experiment_name,
            run_name=run_name or name,
            tracking_uri=tracking_uri,
            tags={**hydra_tags, **(tags or {})},
            artifact_location=None if remote else local_artifacts,
            **kwargs,
        )
        inspect.signature(lightning_mlflow.MLFlowLogger).bind(**self.settings)  # a bad key: now
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self._pending: list[Point] = []
        # Started now, so that mlflow is imported while the data loads; only rank 0 logs.
        self._child = MlflowChild(self.settings) if rank_zero_only.rank == 0 else None

    def __getstate__(self) -> dict[str, Any]:
        """A copy in another process (ddp_spawn) starts a child of its own when it logs."""
        return {**self.__dict__, "_child": None}

    def _request(self, request: Request) -> None:
        if self._child is None:
            self._child = MlflowChild(self.settings)
        self._child.send(request)

    def wait(self) -> None:
        """Until every request so far is done."""
        if self._child is not None:
            self._child.wait()

    @property
    def name(self) -> str:
        return self.experiment_name

    @property
    def version(self) -> str | None:
        """The run id, once the child has created the run (None before)."""
        known = self._child.run_id if self._child is not None else None
        return known or self.settings.get("run_id")

    @property
    def run_id(self) -> str:
        if self.version is None:
            self._request(CreateRun())
            self.wait()
        return self.version

    @property
    @rank_zero_experiment
    def experiment(self) -> LazyClient:
        """MLflow's client for this run's store, made in this process on first use (Lightning
        touches this property at every stage's setup: that must not import mlflow here)."""
        return LazyClient(self)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        self._request(LogParams(dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Keep the points until the next `save`. lrexp's metric names (train/loss, ...) are
        names MLflow accepts as they are."""
        timestamp = int(time.time() * 1000)
        self._pending += [(key, float(v), timestamp, step or 0) for key, v in metrics.items()]

    @rank_zero_only
    def save(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
            self._request(LogBatch(pending[start : start + MAX_METRICS_PER_BATCH]))

    @rank_zero_only
    def log_files(self, files: list[tuple[Path, str | None]]) -> None:
        """Upload files (or folders) as artifacts, each under its folder in the run."""
        for path, folder in files:
            self._request(LogArtifact(str(path), folder, path.is_dir()))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Send what is left. Lightning calls this after each stage (fit, validate, test); the
        child stays for the next, until `close`. A stage that succeeded does not wait: the
        run's own closing work (scores, figures, metrics.json) runs on one core, and the child
        catches up beside it; lrexp.rundir.finish waits (log_artifacts). A failed or
        interrupted stage waits, as its process is about to end."""
        self.save()
        self._request(Finalize(status))
        if status != "success":
            self.wait()

    def close(self) -> None:
        """Wait for every request, then end the child. A later request starts another, which
        continues the same run."""
        self.wait()
        self.settings["run_id"] = self.version
        child, self._child = self._child, None
        if child is not None:
            child.close()


class LazyClient:
    """An MlflowClient, made on the first attribute asked of it, once the child has created the
    run (and so the store: two processes creating one SQLite store collide)."""

    def __init__(self, logger: MLFlowLogger) -> None:
        self._logger, self._client = logger, None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            _ = self._logger.run_id
            self._client = MlflowClient(self._logger.tracking_uri)
        return getattr(self._client, name)


class MlflowChild:
    """A child process that holds Lightning's MLFlowLogger and makes the requests sent to it,
    in order, answering each. Forked, so that it starts without importing torch and Lightning
    again. gc.freeze() around the fork keeps the child's garbage collector off the parent's
    objects, which it would otherwise copy page by page. Requests are not waited for; the
    answers are read as they come (so the pipe never fills) and all of them in `wait`."""

    def __init__(self, settings: dict[str, Any]) -> None:
        context = multiprocessing.get_context("fork")
        self._requests, child_end = context.Pipe()
        gc.freeze()
        try:
            self._process = context.Process(
                target=_serve,
                args=(child_end, self._requests, settings),
                name="lrexp-mlflow",
                daemon=True,
            )
            self._process.start()
        finally:
            gc.unfreeze()
        child_end.close()
        self._unanswered, self.run_id = 0, None

    def send(self, request: Request) -> None:
        while self._unanswered and self._requests.poll():
            self._answer()
        self._requests.send(request)
        self._unanswered += 1

    def wait(self) -> None:
        while self._unanswered:
            self._answer()

    def close(self) -> None:
        """Close the pipe, which ends the child's loop (idle: `wait` came first), and reap it."""
        self._requests.close()
        self._process.join(timeout=CLOSE_TIMEOUT_S)
        if self._process.is_alive():
            self._process.terminate()

    def _answer(self) -> None:
        try:
            answer = self._requests.recv()
        except EOFError:
            raise LrexpError("logger=mlflow: its process ended unexpectedly") from None
        self._unanswered -= 1
        self.run_id = answer.run_id or self.run_id
        if answer.error:
            raise LrexpError(f"logger=mlflow: {answer.error}")


def _serve(requests: Connection, parent_end: Connection, settings: dict[str, Any]) -> None:
    """The child's loop: until the run's process closes the pipe (or dies). The child closes
    its copy of the parent's end first, or that copy would keep the pipe open."""
    parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run, which still logs
    os.nice(CHILD_NICENESS)
    try:
        logger = lightning_mlflow.MLFlowLogger(**settings)
    except Exception as failure:  # e.g. a tracking URI MLflow does not know: each answer says so
        logger, broken = None, _one_line(failure)
    while True:
        try:
            request = requests.recv()
            if logger is None:
                requests.send(Answer(broken, None))
                continue
            try:
                request.apply(logger)
                answer = Answer(None, logger.run_id)
            except Exception as failure:  # the run's process raises it
                answer = Answer(_one_line(failure), None)
            requests.send(answer)
        except (EOFError, OSError):  # the run's process closed the pipe or is gone
            return


def _one_line(failure: Exception) -> str:
    """The first line of an error (a database's errors carry their SQL after it)."""
    lines = str(failure).strip().splitlines()
    return f"{type(failure).__name__}: {lines[0] if lines else ''}"


def _hydra_run_name() -> tuple[str | None, dict[str, str]]:
    """The run's name and tags from Hydra's run (or sweep) dir; (None, {}) outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, {}
    hydra_cfg = HydraConfig.get()
    if OmegaConf.is_missing(hydra_cfg.runtime, "output_dir"):  # a config composed, not run
        return None, {}
    run_dir = Path(hydra_cfg.runtime.output_dir)
    tags = {
        "lrexp.run_dir": str(run_dir),
        "lrexp.command": f"lrexp.{hydra_cfg.job.name}",
        "lrexp.overrides": " ".join(hydra_cfg.overrides.task),
    }
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        tags |= {"lrexp.sweep_dir": str(sweep_dir), "lrexp.job_num": str(hydra_cfg.job.num)}
        return f"{sweep_dir.parent.name}/{sweep_dir.name}/{hydra_cfg.job.num}", tags
    return f"{run_dir.parent.name}/{run_dir.name}", tags


def _mlflow_loggers(loggers: list[Any]) -> list[MLFlowLogger]:
    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def check_tracking(loggers: list[Any]) -> None:
    """Stop before training unless each tracking server is an MLflow server that answers (MLflow's
    own client would retry each call for minutes, or fail mid-run on a server of another kind):
    one line naming the key, the URI and the way out."""
    for logger in _mlflow_loggers(loggers):
        uri = logger.tracking_uri
        if not uri.startswith(REMOTE_SCHEMES):
            continue
        problem = _not_mlflow(uri)
        if problem:
            raise LrexpError(
                f"logger.mlflow.tracking_uri={uri}: {problem}; start one (mlflow server --host "
                "HOST --port PORT) and point the key at it, or leave the key out for the local "
                "store under outputs/"
            )


def _not_mlflow(uri: str) -> str | None:
    """Why `uri` is not an MLflow tracking server that answers, or None: one call of MLflow's
    REST API (experiments/search), which only an MLflow server answers with its JSON, with
    MLflow's own credentials from the environment (MLFLOW_TRACKING_TOKEN, or _USERNAME and
    _PASSWORD)."""
    request = urllib.request.Request(f"{uri.rstrip('/')}/{SEARCH_EXPERIMENTS}")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    elif user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            body = response.read(MAX_PROBE_BYTES)
    except urllib.error.HTTPError as err:
        return f"no MLflow tracking server answers there (HTTP {err.code} to {SEARCH_EXPERIMENTS})"
    except (urllib.error.URLError, OSError) as err:
        return f"no tracking server answers ({getattr(err, 'reason', err)})"
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not answer.keys() <= SEARCH_EXPERIMENTS_KEYS:
        return f"the server there is not an MLflow tracking server (it answered {body[:40]!r})"
    return None


def log_artifacts(loggers: list[Any], run_dir: Path, best_checkpoint: str | None) -> None:
    """metrics.json, figures/, .hydra/config.yaml and the best checkpoint, as artifacts of each
    MLflow run (the paths inside a run mirror the run dir's)."""
    candidates = [
        (run_dir / "metrics.json", None),
        (run_dir / ".hydra" / "config.yaml", ".hydra"),
        (run_dir / "figures", "figures"),
    ]
    files = [(path, folder) for path, folder in candidates if path.exists()]
    if best_checkpoint:
        files.append((Path(best_checkpoint), "checkpoints"))
    for logger in _mlflow_loggers(loggers):
        logger.log_files(files)
        logger.wait()


def close_tracking(loggers: list[Any]) -> None:
    """End the MLflow loggers' child processes, once the run has sent everything."""
    for logger in _mlflow_loggers(loggers):
        logger.close()


def tracking_lines(loggers: list[Any]) -> dict[str, str]:
    """Where the closing summary says the run went: the MLflow UI command or server."""
    lines = {}
    for logger in _mlflow_loggers(loggers):
        uri = logger.tracking_uri
        remote = uri.startswith(REMOTE_SCHEMES)
        lines["mlflow:"] = uri if remote else f"mlflow ui --backend-store-uri {uri}"
    return lines
