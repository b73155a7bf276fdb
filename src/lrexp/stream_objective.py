"""The objective over a training split that is streamed, not held: what full-batch L-BFGS
minimises with data.stream=true.

Each evaluation is one pass over this rank's row groups: per row group the summed loss and its
gradient (float32 products where the tolerance allows, as in memory, float64 sums), summed over
the row groups in float64, then over the ranks with one all-reduce. Every rank thus holds the
same value and gradient, and its L-BFGS takes the same steps. As in memory (solvers'
CentredFloat64) the columns are centred by the training mean, which a first pass measures.

That first pass also writes the preprocessed rows it reads to a cache file of this process
(PassCache, as Vowpal Wabbit caches its input), which every later pass reads back row group by
row group: no Parquet decoding or preprocessing per evaluation, and still one row group in
memory at a time. The file is unnamed (deleted whatever way the process ends) and takes the
rank's share of the training split as float32, on the system's temporary directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from lrexp.objective import Objective

# This rank's training rows, row group by row group: preprocessed features, labels and sample
# weights (None: every row counts once).
Rows = tuple[Tensor, Tensor, Tensor | None]
Passes = Callable[[], Iterator[Rows]]


def all_reduce(values: Tensor) -> Tensor:
    """The sum over the ranks (itself in one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
    return values


class PassCache:
    """`passes` read once, then from a cache file (module docstring)."""

    def __init__(self, passes: Passes) -> None:
        self.source = passes
        # Open as long as the cache lives (the fit): closed, and gone, when it is collected.
        self.file = tempfile.TemporaryFile()  # noqa: SIM115
        # Each row group's features' shape, the three dtypes (None: no weights) and the device.
        self.pieces: list[tuple[tuple[int, ...], list[torch.dtype | None], torch.device]] = []
        self.written = False

    def __call__(self) -> Iterator[Rows]:
        if self.written:
            yield from self._read()
            return
        self.file.seek(0)
        self.file.truncate()
        self.pieces = []
        for rows in self.source():
            for part in rows:
                if part is not None:
                    self.file.write(part.cpu().numpy().tobytes())
            dtypes = [None if part is None else part.dtype for part in rows]
            self.pieces.append((tuple(rows[0].shape), dtypes, rows[0].device))
            yield rows
        self.written = True

    def _read(self) -> Iterator[Rows]:
        self.file.seek(0)
        for shape, dtypes, device in self.pieces:
            sizes = (shape, (shape[0],), (shape[0],))
            parts = []
            for dtype, size in zip(dtypes, sizes, strict=True):
                if dtype is None:
                    parts.append(None)
                    continue
                part = np.fromfile(self.file, _numpy(dtype), int(np.prod(size))).reshape(size)
                parts.append(torch.from_numpy(part).to(device))
            yield tuple(parts)


def _numpy(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


class StreamedSums:
    """The objective and gradient of the whole (streamed) training split, in (w, c) with
    c = b + w·μ as CentredFloat64 moves them."""

    def __init__(self, passes: Passes, products: torch.dtype, device: torch.device) -> None:
        self.passes, self.products = PassCache(passes), products
        total: Tensor | None = None
        for x, y, sample_weight in self.passes():
            rows = [len(y), Objective.rows(y, sample_weight)]
            sums = torch.cat([x.double().sum(0), x.new_tensor(rows, dtype=torch.float64)])
            total = sums if total is None else total + sums
        if total is None:
            raise RuntimeError("StreamedSums: this rank has no training rows")
        total = all_reduce(total.to(device))
        self.rows = total[-1].item()  # the rows' total sample weight, with weights
        # Rounded to the products' dtype, which each row group is centred in: the change of
        # variables c = b + w·μ stays exact (as CentredFloat64's).
        self.mean = (total[:-2] / total[-2]).to(products).double()
        self.products_mean = self.mean.to(products)

    def value_and_gradient(
        self, objective: Objective, weight: Tensor, centred_bias: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """J's smooth part and its gradient, as Objective.value_and_gradient gives them on the
        whole split: summed per row group (reduction=sum), divided by the rows for a mean."""
        summed = Objective(objective.num_classes, objective.l2, 0.0, "sum", objective.class_weights)
        parts = (1, weight.numel(), centred_bias.numel())
        total = torch.zeros(sum(parts), dtype=torch.float64, device=weight.device)
        for x, y, sample_weight in self.passes():
            centred = x.to(self.products) - self.products_mean
            value, grad_w, grad_b = summed.value_and_gradient(
                centred, y, weight, centred_bias, sample_weight
            )
            total += torch.cat([value.reshape(1), grad_w.flatten(), grad_b.flatten()])
        total = all_reduce(total)
        if objective.reduction == "mean":
            total /= self.rows
        value, grad_w, grad_b = total.split(parts)
        return value[0], grad_w.view_as(weight), grad_b.view_as(centred_bias)
