"""Whole-process time of `python -m lrexp.export` next to `python -m lrexp.predict` on the same
784-feature checkpoint (binary Fashion-MNIST, one epoch); prints one JSON document.

Both commands load the checkpoint and rebuild the run's preprocessing; export then traces the
graph and writes model.onnx (or model.pt), predict reads 8 image files and scores them. Goal:
export within 1.5x of predict. The commands alternate, medians over --repeats each.

Usage: python benchmarks/export_speed.py [--repeats N] [--format onnx|torchscript].
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from processes import side_by_side, timed_process

CPU_S: dict[str, list[float]] = {}  # CPU seconds of each process, by command or logger


def lrexp(command: str, *overrides: str) -> float:
    """Wall seconds for one `python -m lrexp.<command>` process, start to exit (its CPU
    seconds go to CPU_S[command])."""
    wall, cpu = timed_process([sys.executable, "-m", f"lrexp.{command}", *overrides])
    CPU_S.setdefault(command, []).append(cpu)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        print("training the checkpoint ...", file=sys.stderr)
        lrexp(
            "train",
            "data=fashion_mnist",
            f"paths.data_dir={scratch / 'data'}",
            "data.normalize=true",
            "trainer.max_epochs=1",
            "trainer.check_val_every_n_epoch=1",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={scratch / 'train'}",
        )
        ckpt = scratch / "train" / "checkpoints" / "last.ckpt"
        images = _write_images(scratch / "images")
        times: dict[str, list[float]] = {"predict": [], "export": []}
        for i in range(args.repeats):
            times["predict"].append(
                lrexp(
                    "predict",
                    f"ckpt_path={ckpt}",
                    f"inputs={images}/*.png",
                    f"hydra.run.dir={scratch / f'predict{i}'}",
                )
            )
            times["export"].append(
                lrexp(
                    "export",
                    f"ckpt_path={ckpt}",
                    f"format={args.format}",
                    f"hydra.run.dir={scratch / f'export{i}'}",
                )
            )
            print(f"repeat {i + 1}: {times}", file=sys.stderr)
    print(
        json.dumps(
            {
                "format": args.format,
                "repeats": args.repeats,
                **side_by_side(times, CPU_S, "predict", "export"),
                "goal": "export_over_predict <= 1.5",
                "all_s": times,
                "all_cpu_s": CPU_S,
            },
            indent=2,
        )
    )


def _write_images(folder: Path) -> Path:
    """8 test images of the run's own data as PNG files, as a user hands them to predict."""
    import numpy as np
    from PIL import Image

    from lrexp.data.fashion_mnist import FashionMNISTDataModule

    folder.mkdir()
    datamodule = FashionMNISTDataModule(
        data_dir=str(folder.parent / "data"),
        positive=["sandal"],
        negative=["sneaker"],
        system_dir="/usr/share/datasets/fashion-mnist",
    )
    datamodule.setup("test")
    for i, image in enumerate(datamodule.splits["test"][0][:8]):
        Image.fromarray(np.asarray(image[0]), mode="L").save(folder / f"item{i}.png")
    return folder


if __name__ == "__main__":
    main()
