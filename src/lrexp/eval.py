"""`python -m lrexp.eval ckpt_path=PATH`: test a saved checkpoint, in a run dir of its own.

The model and, by default, the DataModule are rebuilt from the checkpoint alone: the DataModule's
class, hyper-parameters (classes, split, seed, normalize) and state (the training split's
preprocessing statistics) are the training run's, so the test metrics are the run's own.
`data=NAME` (with any data.* overrides) tests on that data config instead; the preprocessing
state still comes from the checkpoint, and the data must give the features and classes the model
was trained on.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lrexp.checkpoints import checkpoint_path, restore
from lrexp.cli import entry_point, run_as_command
from lrexp.config import check_config
from lrexp.experiment import build_trainer, check_trainer, finish, score
from lrexp.rundir import start_run


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint as its training run did; write metrics.json to this run dir."""
    path = checkpoint_path(cfg, "eval")
    check_config(cfg)
    model, datamodule = restore(cfg, path)
    run_dir = Path(cfg.paths.output_dir)
    trainer, model.fast = build_trainer(cfg, with_callbacks=False)
    check_trainer(trainer)
    if trainer.is_global_zero:
        # Read the test data before the run dir is touched: a bad file stops here.
        datamodule.prepare_data()
        datamodule.setup("test")
        start_run(run_dir, cfg, continuing=False)
    metrics = score(trainer, model, datamodule, ("test",))
    finish("lrexp.eval", run_dir, trainer, model, datamodule, metrics, {"checkpoint:": str(path)})
    return metrics


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    run_as_command(main)
