"""A wide table's model features without the zeros: a dense block (the standardised numeric
columns) beside a sparse block (one-hot categories, hashed values, text tokens), and the two
products a linear model needs from them.

Feature j < d is column j of `dense` (rows, d); feature d + k is column k of the sparse block of
`sparse_width` columns, held row by row as CSR: row i's entries are `indices` and `values`
[indptr[i], indptr[i + 1]), `rows` the row of each entry. An entry may hold the value 0 (a
category not seen in training), and a row may name a column twice (hashed collisions): the
products sum them, as a dense row would hold their sum.

With W = (W_d | W_s) the model's (outputs, d + sparse_width) weights:

- `linear`: X Wᵀ + b = X_d W_dᵀ + b + Σ over each row's entries of value · W_s[:, index], the
  last an embedding bag (torch's, mode="sum") over W_s's columns;
- `transposed_product`: R X for R (outputs, rows) = (R X_d | scatter of R's columns times the
  values into the entries' columns): only the entries' columns get a non-zero.

Plain tensors are model features too (images, numeric tables); the functions at the end take
either, a plain tensor by the same matrix products as ever.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class WideFeatures:
    """A dense block and a CSR sparse block of the same rows (module docstring)."""

    def __init__(
        self,
        dense: Tensor,
        indptr: Tensor | None,
        indices: Tensor,
        values: Tensor,
        sparse_width: int,
        rows: Tensor | None = None,
        per_row: int | None = None,
    ) -> None:
        self.dense, self.indices, self.values = dense, indices, values
        # Entries per row where every row has as many (one-hot and hashed columns alone): rows
        # are then gathered as rows of (rows, per_row) views, the products take those views,
        # and indptr and rows are made only where something asks for them.
        self.sparse_width, self.per_row = sparse_width, per_row
        if indptr is None and per_row is None:
            raise ValueError("WideFeatures: indptr is needed unless every row has per_row entries")
        self._indptr, self._rows = indptr, rows

    @classmethod
    def fixed(cls, dense: Tensor, indices: Tensor, values: Tensor, sparse_width: int):
        """Rows of the same number of entries: `indices` and `values` (rows, per row)."""
        per_row = indices.shape[1]
        flat_indices, flat_values = indices.reshape(-1), values.reshape(-1)
        return cls(dense, None, flat_indices, flat_values, sparse_width, None, per_row)

    @property
    def indptr(self) -> Tensor:
        if self._indptr is None:
            self._indptr = torch.arange(len(self) + 1, device=self.device) * self.per_row
        return self._indptr

    @property
    def rows(self) -> Tensor:
        """The row of each entry."""
        if self._rows is None:
            if self.per_row is not None:
                n = len(self)
                self._rows = (
                    torch.arange(n, device=self.device)[:, None].expand(n, self.per_row).reshape(-1)
                )
            else:
                lengths = self.indptr[1:] - self.indptr[:-1]
                self._rows = torch.repeat_interleave(
                    torch.arange(len(lengths), device=self.device),
                    lengths,
                    output_size=len(self.indices),
                )
        return self._rows

    @classmethod
    def hstack(
        cls, dense: Tensor, blocks: Sequence[WideFeatures], shared: bool = False
    ) -> WideFeatures:
        """`dense` beside the sparse blocks of `blocks` (same rows): side by side in order, or
        (`shared`) all in the same columns, each row's entries one after the other."""
        if len(blocks) == 1:
            (block,) = blocks
            return block.with_dense(dense)
        lengths = torch.stack([b.indptr[1:] - b.indptr[:-1] for b in blocks])  # (blocks, rows)
        indptr = torch.zeros(len(dense) + 1, dtype=torch.int64, device=dense.device)
        indptr[1:] = lengths.sum(0).cumsum(0)
        before = lengths.cumsum(0) - lengths  # each block's entries follow the earlier ones'
        total = int(indptr[-1])
        indices = torch.empty(total, dtype=torch.int64, device=dense.device)
        values = torch.empty(total, dtype=dense.dtype, device=dense.device)
        rows = torch.empty(total, dtype=torch.int64, device=dense.device)
        offset = 0
        for b, block in enumerate(blocks):
            within = torch.arange(len(block.indices), device=dense.device)
            at = indptr[block.rows] + before[b, block.rows] + within - block.indptr[block.rows]
            indices[at] = block.indices + offset
            values[at] = block.values.to(dense.dtype)
            rows[at] = block.rows
            offset += 0 if shared else block.sparse_width
        width = blocks[0].sparse_width if shared else offset
        fixed = all(b.per_row is not None for b in blocks)
        per_row = sum(b.per_row for b in blocks) if fixed else None
        return cls(dense, indptr, indices, values, width, rows, per_row)

    # --- what a tensor of features offers -------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.dense), self.dense.shape[1] + self.sparse_width

    @property
    def dtype(self) -> torch.dtype:
        return self.dense.dtype

    @property
    def device(self) -> torch.device:
        return self.dense.device

    def __len__(self) -> int:
        return len(self.dense)

    def to(self, *args, **kwargs) -> WideFeatures:
        """As Tensor.to: the dense block and the values change dtype, everything moves; the same
        object where nothing changes."""
        dense = self.dense.to(*args, **kwargs)
        if dense is self.dense:
            return self
        device = dense.device
        return WideFeatures(
            dense,
            None if self._indptr is None else self._indptr.to(device),
            self.indices.to(device),
            self.values.to(device=device, dtype=dense.dtype),
            self.sparse_width,
            None if self._rows is None else self._rows.to(device),
            self.per_row,
        )

    def double(self) -> WideFeatures:
        return self.to(torch.float64)

    def float(self) -> WideFeatures:
        return self.to(torch.float32)

    def cpu(self) -> WideFeatures:
        return self.to("cpu")

    def detach(self) -> WideFeatures:
        return self

    def __getitem__(self, index: Tensor | slice) -> WideFeatures:
        """The rows `index` names (a slice or a tensor of row numbers), in its order."""
        if isinstance(index, slice):
            index = torch.arange(len(self), device=self.device)[index]
        if self.per_row is not None:
            shape = (len(self), self.per_row)
            return WideFeatures.fixed(
                torch.index_select(self.dense, 0, index),
                torch.index_select(self.indices.view(shape), 0, index),
                torch.index_select(self.values.view(shape), 0, index),
                self.sparse_width,
            )
        starts = self.indptr[index]
        lengths = self.indptr[index + 1] - starts
        indptr = torch.zeros(len(index) + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(lengths, 0, out=indptr[1:])
        total = int(indptr[-1])
        rows = torch.repeat_interleave(
            torch.arange(len(index), device=self.device), lengths, output_size=total
        )
        at = starts[rows] + torch.arange(total, device=self.device) - indptr[rows]
        return WideFeatures(
            self.dense[index],
            indptr,
            self.indices[at],
            self.values[at],
            self.sparse_width,
            rows,
        )

    def with_dense(self, dense: Tensor) -> WideFeatures:
        """The same sparse block beside another dense block of the same rows."""
        return WideFeatures(
            dense,
            self._indptr,
            self.indices,
            self.values.to(dense.dtype),
            self.sparse_width,
            self._rows,
            self.per_row,
        )

    def scale_rows(self, factor: Tensor) -> WideFeatures:
        """Row i times factor[i]."""
        return WideFeatures(
            self.dense * factor[:, None],
            self._indptr,
            self.indices,
            self.values * factor[self.rows],
            self.sparse_width,
            self._rows,
            self.per_row,
        )

    def to_dense(self) -> Tensor:
        """Every column, zeros too: only for a few rows or columns (tests, inference's slices)."""
        sparse = self.dense.new_zeros(len(self), self.sparse_width)
        sparse.index_put_((self.rows, self.indices), self.values, accumulate=True)
        return torch.cat([self.dense, sparse], 1)

    @classmethod
    def cat(cls, parts: Sequence[WideFeatures]) -> WideFeatures:
        """The rows of `parts` (of one sparse width) one after another: what torch.cat is to
        tensors (a stream's row groups into one shuffle buffer). Each part's indptr starts at
        0 and ends at its entries, as every WideFeatures' does."""
        width, per_row = parts[0].sparse_width, parts[0].per_row
        if any(p.sparse_width != width for p in parts):
            raise ValueError(f"WideFeatures.cat: sparse widths {[p.sparse_width for p in parts]}")
        dense = torch.cat([p.dense for p in parts])
        indices = torch.cat([p.indices for p in parts])
        values = torch.cat([p.values for p in parts])
        if per_row is not None and all(p.per_row == per_row for p in parts):
            shape = (len(dense), per_row)
            return cls.fixed(dense, indices.view(shape), values.view(shape), width)
        # Python ints: the offsets need no device synchronisation.
        entries, rows = 0, 0
        indptr, row_of = [parts[0].indptr[:1]], []
        for part in parts:
            indptr.append(part.indptr[1:] + entries)
            row_of.append(part.rows + rows)
            entries, rows = entries + len(part.indices), rows + len(part)
        return cls(dense, torch.cat(indptr), indices, values, width, torch.cat(row_of))

    def sparse_column_sums(self) -> Tensor:
        """Each sparse column's sum in float64."""
        sums = self.dense.new_zeros(self.sparse_width, dtype=torch.float64)
        return sums.index_add_(0, self.indices, self.values.double())

    def column_sums(self) -> Tensor:
        """Each column's sum in float64, the dense columns then the sparse block's."""
        return torch.cat([self.dense.double().sum(0), self.sparse_column_sums()])

    @property
    def nbytes(self) -> int:
        """The bytes its tensors hold (indptr and rows only where made)."""
        parts = (self.dense, self._indptr, self.indices, self.values, self._rows)
        return sum(p.numel() * p.element_size() for p in parts if p is not None)

    # --- the products ---------------------------------------------------------------------------

    def linear(self, weight: Tensor, bias: Tensor) -> Tensor:
        """(rows, outputs) X Wᵀ + b, in the weight's dtype (the features' own must match)."""
        d = self.dense.shape[1]
        logits = torch.addmm(bias, self.dense, weight[:, :d].t())
        if self.per_row is not None:  # bags of per_row entries: no offsets
            shape = (len(self), self.per_row)
            sparse = F.embedding_bag(
                self.indices.view(shape),
                weight[:, d:].t(),
                mode="sum",
                per_sample_weights=self.values.view(shape),
            )
        else:
            sparse = F.embedding_bag(
                self.indices,
                weight[:, d:].t(),
                self.indptr,
                mode="sum",
                per_sample_weights=self.values,
                include_last_offset=True,
            )
        return logits.add_(sparse)

    def transposed_product(
        self,
        residual: Tensor,
        weight: Tensor | None = None,
        decay: float = 0.0,
        scale: float = 1.0,
        out: Tensor | None = None,
    ) -> Tensor:
        """decay · W + scale · R X for R (outputs, rows), into `out` where given."""
        d = self.dense.shape[1]
        if out is None:
            out = residual.new_empty(len(residual), self.shape[1])
        if weight is not None and decay:
            out[:, :d] = torch.addmm(weight[:, :d], residual, self.dense, beta=decay, alpha=scale)
            torch.mul(weight[:, d:], decay, out=out[:, d:])
        else:
            out[:, :d] = torch.mm(residual, self.dense).mul_(scale)
            out[:, d:].zero_()
        if self.per_row is not None:  # each row's entries side by side: no row of each entry
            scaled = (self.values * scale).view(len(self), self.per_row)
            entries = (residual.unsqueeze(-1) * scaled).reshape(len(residual), -1)
        else:
            entries = residual[:, self.rows] * (self.values * scale)
        out[:, d:].index_add_(1, self.indices, entries)
        return out

    def row_squared_norms(self) -> Tensor:
        """‖x_i‖² per row, entries naming the same column summed first."""
        pairs, which = torch.unique(
            self.rows * self.sparse_width + self.indices, return_inverse=True
        )
        summed = self.values.new_zeros(len(pairs)).index_add_(0, which, self.values)
        sparse = self.dense.new_zeros(len(self))
        sparse.index_add_(0, pairs // max(self.sparse_width, 1), summed.square())
        return self.dense.square().sum(1) + sparse


Features = Tensor | WideFeatures


def linear(x: Features, weight: Tensor, bias: Tensor) -> Tensor:
    """(rows, outputs) x Wᵀ + b."""
    if isinstance(x, WideFeatures):
        return x.linear(weight, bias)
    return torch.addmm(bias, x, weight.t())


def transposed_product(residual: Tensor, x: Features) -> Tensor:
    """(outputs, features) R x for R (outputs, rows)."""
    if isinstance(x, WideFeatures):
        return x.transposed_product(residual)
    return residual @ x


def row_squared_norms(x: Features) -> Tensor:
    if isinstance(x, WideFeatures):
        return x.row_squared_norms()
    return x.pow(2).sum(1)


def as_dense(x: Features) -> Tensor:
    """Every column of a few rows (inference's slices)."""
    return x.to_dense() if isinstance(x, WideFeatures) else x


def cat(parts: Sequence[Features]) -> Features:
    """The rows of `parts` one after another: all tensors, or all WideFeatures."""
    if isinstance(parts[0], WideFeatures):
        return WideFeatures.cat(parts)
    return torch.cat(parts)
