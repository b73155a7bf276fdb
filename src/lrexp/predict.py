"""`python -m lrexp.predict ckpt_path=PATH inputs=...`: P(label 1) for new inputs.

Model and preprocessing come from the checkpoint (see lrexp.eval.restore): toy hours are used
as given, image files get the training run's own resizing, scaling and standardisation.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from lrexp.cli import entry_point, run_as_command
from lrexp.config import check_config
from lrexp.errors import LrexpError
from lrexp.eval import checkpoint_path, restore
from lrexp.run import print_summary, start_run, write_atomic

PREDICTIONS_FILE = "predictions.csv"
THRESHOLD = 0.5  # P(label 1) from which the predicted label is 1, as in the metrics


def predict(cfg: DictConfig) -> list[tuple[str, float, int]]:
    """One row per input: (input, P(label 1), predicted label); printed and in predictions.csv."""
    run_dir = Path(cfg.paths.output_dir)
    path = checkpoint_path(cfg, "predict")
    check_config(cfg)
    if OmegaConf.is_missing(cfg, "inputs") or cfg.inputs is None:
        raise LrexpError(
            "inputs is missing: inputs=[4.0,5.5] (toy hours) or inputs=PATH_OR_GLOB (images)"
        )
    model, datamodule = restore(cfg, path)
    inputs = (
        OmegaConf.to_container(cfg.inputs) if isinstance(cfg.inputs, ListConfig) else [cfg.inputs]
    )
    names, features = datamodule.encode_inputs(inputs)
    with torch.no_grad():
        probs = model(features).tolist()
    rows = [(name, p, int(p >= THRESHOLD)) for name, p in zip(names, probs, strict=True)]
    start_run(run_dir, cfg, continuing=False)

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["input", "p_label_1", "label"])
    writer.writerows(rows)
    csv_path = run_dir / PREDICTIONS_FILE
    write_atomic(csv_path, table.getvalue().encode())
    print("input\tP(label 1)\tlabel")
    for name, p, label in rows:
        print(f"{name}\t{p:.6f}\t{label}")
    print_summary("lrexp.predict", {}, {"run dir:": str(run_dir), "predictions:": str(csv_path)})
    return rows


main = entry_point("predict")(predict)

if __name__ == "__main__":
    run_as_command(main)
