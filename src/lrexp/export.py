"""`python -m lrexp.export ckpt_path=PATH [format=onnx|torchscript]`: a model file that runs
without lrexp, and its card, in a run dir of its own.

The file maps what `predict` takes before preprocessing (raw pixels 0-255, flattened per image;
toy hours; raw table features), batch first with a dynamic batch size, to the probabilities:
the DataModule's preprocessing (`export_preprocessing()`, with the training run's statistics as
constants) followed by the model. Output: binary models give P(label 1) with shape (N,);
models of K classes give (N, K), rows summing to 1. model.json says the same for one model:
labels, input (`input_card()`), preprocessing, the training run's metrics, versions, opset.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

import lrexp
from lrexp.checkpoints import checkpoint_path, restore
from lrexp.cli import entry_point, run_as_command
from lrexp.errors import LrexpError
from lrexp.rundir import METRICS_FILE, print_summary, start_run, write_atomic

MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
CARD_FILE = "model.json"
INPUT_NAME, OUTPUT_NAME = "inputs", "probabilities"
INPUT_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}


class Exported(nn.Module):
    """Raw input → preprocessing → probabilities: the graph that is exported.

    It holds the model's Linear layer, not the LightningModule (whose `trainer` property fails
    outside a Trainer, and TorchScript visits every property): the probabilities are the
    model's forward — sigmoid of the one logit for two labels, softmax over K logits otherwise —
    which the parity tests hold it to.
    """

    def __init__(self, preprocessing: nn.Module, linear: nn.Linear) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.linear = linear
        self.binary = linear.out_features == 1

    def forward(self, inputs: Tensor) -> Tensor:
        logits = self.linear(self.preprocessing(inputs))
        if self.binary:
            return torch.sigmoid(logits.squeeze(-1))
        return torch.softmax(logits, dim=-1)


def export(cfg: DictConfig) -> Path:
    """Write the model file and model.json to this run dir; return the model file's path."""
    fmt = str(cfg.format)
    if fmt not in MODEL_FILES:
        raise LrexpError(f"format={fmt}: unknown format; use format=onnx or format=torchscript")
    dtype = INPUT_DTYPES.get(str(cfg.input_dtype))
    if dtype is None:
        raise LrexpError(f"input_dtype={cfg.input_dtype}: use float32 or uint8")
    run_dir = Path(cfg.paths.output_dir)
    if earlier := [n for n in (*MODEL_FILES.values(), CARD_FILE) if (run_dir / n).exists()]:
        raise LrexpError(
            f"hydra.run.dir={run_dir} already holds an export ({earlier[0]}): "
            "choose another hydra.run.dir"
        )
    path = checkpoint_path(cfg, "export")
    model, datamodule = restore(cfg, path)
    model.eval()
    card = _card(cfg, path, model, datamodule)
    if dtype is torch.uint8 and card["input"].get("kind") != "image":
        raise LrexpError("input_dtype=uint8 is for models trained on images: use float32")
    graph = Exported(datamodule.export_preprocessing(), model.linear).eval()
    # The raw input's width: the model's for pixels and hours, one column per table column.
    sample = torch.zeros(2, int(card["input"]["shape"][-1]), dtype=dtype)
    data = _onnx(graph, sample, int(cfg.opset)) if fmt == "onnx" else _torchscript(graph, sample)

    start_run(run_dir, cfg, continuing=False)
    model_path = run_dir / MODEL_FILES[fmt]
    write_atomic(model_path, data)
    write_atomic(run_dir / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode())
    print_summary(
        "lrexp.export",
        {},
        {"run dir:": str(run_dir), "model:": str(model_path), "card:": str(run_dir / CARD_FILE)},
    )
    return model_path


def _onnx(graph: Exported, sample: Tensor, opset: int) -> bytes:
    """The ONNX file's bytes, from torch's torch.export-based exporter (the legacy TorchScript
    one is deprecated), with the batch dimension left dynamic."""
    batch = torch.export.Dim("batch")
    # onnxscript's optimiser reports each of its passes at INFO: noise in an export's log.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        program = torch.onnx.export(
            graph,
            (sample,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes={"inputs": {0: batch}},
            dynamo=True,
            verbose=False,
        )
    except Exception as err:  # torch.onnx raises its own error types for an opset it cannot use
        raise LrexpError(
            f"opset={opset}: torch.onnx cannot export at this opset "
            f"({str(err).splitlines()[0]}); use opset=18"
        ) from None
    return program.model_proto.SerializeToString()


def _torchscript(graph: Exported, sample: Tensor) -> bytes:
    """A traced TorchScript module's bytes: every operation here is shape-agnostic, so the trace
    holds for any batch size."""
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(graph, sample), buffer)
    return buffer.getvalue()


def _card(cfg: DictConfig, path: Path, model: nn.Module, datamodule: Any) -> dict[str, Any]:
    """model.json: what the file takes and gives, where it came from, and how well it did."""
    input_card = dict(datamodule.input_card())
    preprocessing = input_card.pop("preprocessing")
    num_classes = model.hparams.get("num_classes", 2)
    binary = num_classes == 2
    input_card |= {"name": INPUT_NAME, "dtype": str(cfg.input_dtype)}
    # <run>/checkpoints/x.ckpt → the training run's <run>/metrics.json, when it is there.
    metrics_path = path.resolve().parent.parent / METRICS_FILE
    card = {
        "format": str(cfg.format),
        "checkpoint": str(path.resolve()),
        "label_names": list(datamodule.label_names),
        "input": input_card,
        "preprocessing": preprocessing,
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch"] if binary else ["batch", num_classes],
            "meaning": "P(label 1) per row (label_names[1])"
            if binary
            else "P(class k) per row and class (label_names[k]); rows sum to 1",
        },
        "training_metrics": (
            json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
        ),
        "versions": {"lrexp": lrexp.__version__, "torch": torch.__version__},
    }
    if cfg.format == "onnx":
        import onnx

        card["opset"] = int(cfg.opset)
        card["versions"]["onnx"] = onnx.__version__
    return card


main = entry_point("export")(export)

if __name__ == "__main__":
    run_as_command(main)
