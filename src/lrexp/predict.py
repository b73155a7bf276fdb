"""`python -m lrexp.predict ckpt_path=PATH inputs=...`: class probabilities for new inputs.

Model and preprocessing come from the checkpoint (lrexp.checkpoints.restore): toy hours are used
as given, image files get the training run's own resizing, scaling and standardisation, table
rows its encoding.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from lrexp.checkpoints import checkpoint_path, restore
from lrexp.cli import entry_point, run_as_command
from lrexp.config import check_config
from lrexp.errors import LrexpError
from lrexp.model import predicted_labels
from lrexp.rundir import print_summary, start_run, write_atomic

PREDICTIONS_FILE = "predictions.csv"


def predict(cfg: DictConfig) -> list[list[str | float | int]]:
    """One row per input: the input, each class's probability and the predicted label (binary:
    0/1; K classes: the class name); printed and written to predictions.csv."""
    run_dir = Path(cfg.paths.output_dir)
    path = checkpoint_path(cfg, "predict")
    check_config(cfg)
    if OmegaConf.is_missing(cfg, "inputs") or cfg.inputs is None:
        raise LrexpError(
            "inputs is missing: inputs=[4.0,5.5] (toy hours), inputs=PATH_OR_GLOB (images) or "
            "inputs=FILE.csv (table rows)"
        )
    if isinstance(cfg.inputs, ListConfig) and not cfg.inputs:
        raise LrexpError("inputs=[] is empty: give at least one input, e.g. inputs=[4.0,5.5]")
    model, datamodule = restore(cfg, path)
    inputs = (
        OmegaConf.to_container(cfg.inputs) if isinstance(cfg.inputs, ListConfig) else cfg.inputs
    )
    if not isinstance(inputs, list | str):
        inputs = [inputs]  # one toy number
    names, features = datamodule.encode_inputs(inputs)
    with torch.no_grad():
        probs = model(features)
    start_run(run_dir, cfg, continuing=False)

    classes = list(model.hparams.get("class_names") or range(model.hparams.num_classes))
    if probs.dim() == 1:
        header = ["input", "p_label_1", "label"]
        labels = predicted_labels(probs).tolist()
        rows = [[n, p, lab] for n, p, lab in zip(names, probs.tolist(), labels, strict=True)]
        shown = [f"{n}\t{p:.6f}\t{label}" for n, p, label in rows]
        shown_header = "input\tP(label 1)\tlabel"
    else:
        header = ["input", *(f"p_{c}" for c in classes), "label"]
        top = probs.topk(min(2, probs.shape[1]), dim=1)
        rows = [
            [n, *p, classes[i[0]]]
            for n, p, i in zip(names, probs.tolist(), top.indices.tolist(), strict=True)
        ]
        shown = [
            f"{n}\t{classes[i[0]]} ({v[0]:.4f})\t{classes[i[1]]} ({v[1]:.4f})"
            for n, v, i in zip(names, top.values.tolist(), top.indices.tolist(), strict=True)
        ]
        shown_header = "input\tclass (P)\trunner-up (P)"

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    csv_path = run_dir / PREDICTIONS_FILE
    write_atomic(csv_path, table.getvalue().encode())
    print(shown_header)
    print("\n".join(shown))
    print_summary("lrexp.predict", {}, {"run dir:": str(run_dir), "predictions:": str(csv_path)})
    return rows


main = entry_point("predict")(predict)

if __name__ == "__main__":
    run_as_command(main)
