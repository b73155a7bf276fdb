"""Experiment tracking beyond Lightning's loggers: MLflow runs named after their run dir, a
check that a tracking server answers before training starts, and the run's files uploaded as
artifacts when it ends.

Lightning's MLFlowLogger sends the params (log_hyperparams) and the epoch curves (log_metrics);
what it does not send — metrics.json, figures/, the config and the best checkpoint — is
uploaded here, once the run dir holds them.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import mlflow as lightning_mlflow
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from lrexp.errors import LrexpError

if TYPE_CHECKING:  # mlflow is imported only by runs that use it (lrexp[mlflow])
    from mlflow.entities import Metric

REMOTE_SCHEMES = ("http://", "https://")
# Seconds to wait for a tracking server's answer: a server that is up answers /health at once;
# one that is down or unreachable must not keep the user waiting.
PROBE_TIMEOUT_S = 5.0
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch request


class MLFlowLogger(lightning_mlflow.MLFlowLogger):
    """Lightning's MLFlowLogger with lrexp's defaults (conf/logger/mlflow.yaml):

    - a local store (sqlite:///…) keeps its artifacts in `local_artifacts` (under outputs/, not
      MLflow's default ./mlruns beside the current directory); a server decides this itself;
    - run_name=None names the run after its run dir: the last two parts of Hydra's run dir
      (date/time), or for a job of a sweep (-m) the sweep dir's last two parts and the job
      number, so the runs of one sweep sort together; tags keep the full paths and the job's
      overrides;
    - the epoch points are sent in one batch per checkpoint (`save`, which lrexp calls at every
      checkpoint) and at the end, not one request per epoch: each request is a database
      transaction, which would cost a run of many short epochs more than its training. As with
      TensorBoard's buffered writer, a run killed later has every point up to its last
      checkpoint in the store.
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
        remote = tracking_uri.startswith(REMOTE_SCHEMES)
        name, hydra_tags = _hydra_run_name()
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name or name,
            tracking_uri=tracking_uri,
            tags={**hydra_tags, **(tags or {})},
            artifact_location=None if remote else local_artifacts,
            **kwargs,
        )
        self.tracking_uri = tracking_uri
        self._pending: list[Metric] = []

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Keep the points until the next `save`. lrexp's metric names (train/loss, ...) are
        names MLflow accepts as they are."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self._pending += [
            Metric(key=key, value=float(value), timestamp=timestamp, step=step or 0)
            for key, value in metrics.items()
        ]

    @rank_zero_only
    def save(self) -> None:
        super().save()
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
            batch = pending[start : start + MAX_METRICS_PER_BATCH]
            self.experiment.log_batch(run_id=self.run_id, metrics=batch)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.save()
        super().finalize(status)


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


def _mlflow_loggers(loggers: list[Any]) -> list[lightning_mlflow.MLFlowLogger]:
    return [lg for lg in loggers if isinstance(lg, lightning_mlflow.MLFlowLogger)]


def check_tracking(loggers: list[Any]) -> None:
    """Stop before training when a tracking server does not answer (MLflow's own client would
    retry each call for minutes): one line naming the URI and the way out."""
    for logger in _mlflow_loggers(loggers):
        uri = getattr(logger, "tracking_uri", "")  # lrexp's MLFlowLogger keeps it
        if not uri.startswith(REMOTE_SCHEMES):
            continue
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass  # something answers over HTTP: MLflow's client reports the rest
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise LrexpError(
                f"logger.mlflow.tracking_uri={uri}: no tracking server answers ({reason}); "
                "start it (mlflow server --host HOST --port PORT) or leave the key out for the "
                "local store under outputs/"
            ) from None


def log_artifacts(loggers: list[Any], run_dir: Path, best_checkpoint: str | None) -> None:
    """metrics.json, figures/, .hydra/config.yaml and the best checkpoint, as artifacts of each
    MLflow run (the paths inside a run mirror the run dir's)."""
    for logger in _mlflow_loggers(loggers):
        client, run_id = logger.experiment, logger.run_id
        for name, folder in (("metrics.json", None), (".hydra/config.yaml", ".hydra")):
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name), folder)
        if (run_dir / "figures").is_dir():
            client.log_artifacts(run_id, str(run_dir / "figures"), "figures")
        if best_checkpoint:
            client.log_artifact(run_id, best_checkpoint, "checkpoints")


def tracking_lines(loggers: list[Any]) -> dict[str, str]:
    """Where the closing summary says the run went: the MLflow UI command or server."""
    lines = {}
    for logger in _mlflow_loggers(loggers):
        uri = getattr(logger, "tracking_uri", "")
        remote = uri.startswith(REMOTE_SCHEMES)
        lines["mlflow:"] = uri if remote else f"mlflow ui --backend-store-uri {uri}"
    return lines
