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
rank's share of the training split as float32 (hashed string columns: each entry's column and
value, and each row's first entry), on the system's temporary directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from lrexp.data.wide_features import Features, WideFeatures
from lrexp.objective import Objective

# This rank's training rows, row group by row group: preprocessed features (WideFeatures where
# string columns are hashed), labels and sample weights (None: every row counts once).
Rows = tuple[Features, Tensor, Tensor | None]
Passes = Callable[[], Iterator[Rows]]
Spec = tuple[tuple[int, ...], torch.dtype]  # a cached tensor's shape and dtype
Piece = tuple[tuple[int, int | None] | None, list[Spec | None], torch.device]


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
        # Per row group: the features' layout (None: a tensor; else WideFeatures' sparse width
        # and entries per row), the shape and dtype of each tensor written (None: no weights)
        # and the device.
        self.pieces: list[Piece] = []
        self.written = False

    def __call__(self) -> Iterator[Rows]:
        if self.written:
            yield from self._read()
            return
        self.file.seek(0)
        self.file.truncate()
        self.pieces = []
        for rows in self.source():
            x, y, weight = rows
            wide = isinstance(x, WideFeatures)
            # The rows of each entry follow from indptr, and indptr from per_row where every
            # row has as many entries: neither is written then.
            if wide:
                indptr = None if x.per_row is not None else x.indptr
                tensors = [x.dense, indptr, x.indices, x.values]
            else:
                tensors = [x]
            specs: list[Spec | None] = []
            for part in [*tensors, y, weight]:
                if part is None:
                    specs.append(None)
                    continue
                self.file.write(part.cpu().numpy().tobytes())
                specs.append((tuple(part.shape), part.dtype))
            layout = (x.sparse_width, x.per_row) if wide else None
            self.pieces.append((layout, specs, y.device))
            yield rows
        self.written = True

    def _read(self) -> Iterator[Rows]:
        self.file.seek(0)
        for layout, specs, device in self.pieces:
            parts = []
            for spec in specs:
                if spec is None:
                    parts.append(None)
                    continue
                shape, dtype = spec
                part = np.fromfile(self.file, _numpy(dtype), int(np.prod(shape))).reshape(shape)
                parts.append(torch.from_numpy(part).to(device))
            if layout is None:
                yield tuple(parts)
                continue
            dense, indptr, indices, values, y, weight = parts
            width, per_row = layout
            x = WideFeatures(dense, indptr, indices, values, width, per_row=per_row)
            yield x, y, weight


def _numpy(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


class StreamedSums:
    """The objective and gradient of the whole (streamed) training split, in (w, c) with
    c = b + w·μ as CentredFloat64 moves them: each row group's dense block centred, a
    WideFeatures' sparse block centred implicitly, as CentredFloat64 centres it."""

    def __init__(self, passes: Passes, products: torch.dtype, device: torch.device) -> None:
        self.passes, self.products = PassCache(passes), products
        total: Tensor | None = None
        dense = 0  # the dense columns (a WideFeatures' sparse block follows them in `total`)
        for x, y, sample_weight in self.passes():
            wide = isinstance(x, WideFeatures)
            dense = x.dense.shape[1] if wide else x.shape[1]
            columns = x.column_sums() if wide else x.double().sum(0)
            rows = [len(y), Objective.rows(y, sample_weight)]
            sums = torch.cat([columns, columns.new_tensor(rows)])
            total = sums if total is None else total + sums
        if total is None:
            raise RuntimeError("StreamedSums: this rank has no training rows")
        total = all_reduce(total.to(device))
        self.rows = total[-1].item()  # the rows' total sample weight, with weights
        mean = total[:-2] / total[-2]
        # Rounded to the products' dtype, which each row group is centred in: the change of
        # variables c = b + w·μ stays exact (as CentredFloat64's).
        self.products_mean = mean[:dense].to(products)
        # μ where the rows are not centred (the sparse block's), None without one.
        self.implicit = None
        if len(mean) > dense:
            self.implicit = torch.cat([torch.zeros_like(mean[:dense]), mean[dense:]])
        self.mean = torch.cat([self.products_mean.double(), mean[dense:]])

    def value_and_gradient(
        self, objective: Objective, weight: Tensor, centred_bias: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """J's smooth part and its gradient, as Objective.value_and_gradient gives them on the
        whole split: summed per row group (reduction=sum), divided by the rows for a mean."""
        summed = Objective(objective.num_classes, objective.l2, 0.0, "sum", objective.class_weights)
        parts = (1, weight.numel(), centred_bias.numel())
        total = torch.zeros(sum(parts), dtype=torch.float64, device=weight.device)
        # (X_s - 1μ_sᵀ) w_s = X_s w_s - μ_s·w_s: the sparse block's centring moves into the
        # intercept the products get, and out of the gradient after the sum.
        bias = centred_bias if self.implicit is None else centred_bias - weight @ self.implicit
        for x, y, sample_weight in self.passes():
            if isinstance(x, WideFeatures):
                centred = x.with_dense(x.dense.to(self.products) - self.products_mean)
            else:
                centred = x.to(self.products) - self.products_mean
            value, grad_w, grad_b = summed.value_and_gradient(
                centred, y, weight, bias, sample_weight
            )
            total += torch.cat([value.reshape(1), grad_w.flatten(), grad_b.flatten()])
        total = all_reduce(total)
        if objective.reduction == "mean":
            total /= self.rows
        value, grad_w, grad_b = total.split(parts)
        grad_w, grad_b = grad_w.view_as(weight), grad_b.view_as(centred_bias)
        if self.implicit is not None:
            grad_w = grad_w - torch.outer(grad_b, self.implicit)
        return value[0], grad_w, grad_b
