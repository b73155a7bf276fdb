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
from lrexp.data.toy import is_toy
from lrexp.experiment import build_trainer
from lrexp.rundir import finish, start_run


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint as its training run did; write metrics.json to this run dir."""
    path = checkpoint_path(cfg, "eval")
    check_config(cfg)
    model, datamodule = restore(cfg, path)
    run_dir = Path(cfg.paths.output_dir)
    trainer, model.fast = build_trainer(cfg, with_callbacks=False)
    if trainer.is_global_zero:
        # Read the test data before the run dir is touched: a bad file stops here.
        datamodule.prepare_data()
        datamodule.setup("test")
        start_run(run_dir, cfg, continuing=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if is_toy(datamodule):
        metrics |= model.toy_summary()
    finish("lrexp.eval", run_dir, trainer, model, datamodule, metrics, {"checkpoint:": str(path)})
    return metrics


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    run_as_command(main)
