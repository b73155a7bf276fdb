"""A wide table's features hold the dense matrix's numbers without its zeros: every operation
agrees with the same operation on the dense matrix (to_dense)."""

from __future__ import annotations

import pytest
import torch

from lrexp.data.batches import tensor_loader
from lrexp.data.wide_features import WideFeatures, as_dense, cat, linear, row_squared_norms


def wide(rows: int = 200, seed: int = 0, fixed: bool = False) -> WideFeatures:
    """Three numbers, two one-hot columns (one entry each, some of value 0: unseen) and a bag of
    0-4 hashed entries per row (collisions within a row included); `fixed`: without the bag,
    every row of the same number of entries (the products' (rows, per_row) views)."""
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randn(rows, 3, generator=generator, dtype=torch.float64)
    onehot = WideFeatures.fixed(
        dense,
        torch.randint(0, 12, (rows, 2), generator=generator),
        (torch.rand(rows, 2, generator=generator) > 0.1).double(),
        12,
    )
    if fixed:
        return onehot
    lengths = torch.randint(0, 5, (rows,), generator=generator)
    indptr = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    entries = int(indptr[-1])
    bag = WideFeatures(
        torch.zeros(rows, 0, dtype=torch.float64),
        indptr,
        torch.randint(0, 6, (entries,), generator=generator),
        torch.rand(entries, generator=generator, dtype=torch.float64),
        6,
    )
    return WideFeatures.hstack(dense, [onehot, bag])


def test_the_blocks_stand_side_by_side_as_dense_columns() -> None:
    x = wide()
    dense = x.to_dense()
    assert x.shape == (200, 3 + 12 + 6) == dense.shape
    assert torch.equal(dense[:, :3], x.dense)
    assert (dense[:, 3:15].sum(1) <= 2).all()  # one entry per one-hot column


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("outputs", [1, 4])
def test_the_products_equal_the_dense_matrixs(outputs: int, fixed: bool) -> None:
    x = wide(fixed=fixed)
    assert (x.per_row == 2) is fixed
    dense = x.to_dense()
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(outputs, x.shape[1], generator=generator, dtype=torch.float64)
    bias = torch.randn(outputs, generator=generator, dtype=torch.float64)
    residual = torch.randn(outputs, len(x), generator=generator, dtype=torch.float64)
    torch.testing.assert_close(linear(x, weight, bias), dense @ weight.T + bias)
    torch.testing.assert_close(x.transposed_product(residual), residual @ dense)
    out = torch.empty_like(weight)
    x.transposed_product(residual, weight, decay=0.3, scale=0.5, out=out)
    torch.testing.assert_close(out, 0.3 * weight + 0.5 * residual @ dense)
    torch.testing.assert_close(row_squared_norms(x), dense.pow(2).sum(1))
    factor = torch.rand(len(x), generator=generator, dtype=torch.float64)
    torch.testing.assert_close(x.scale_rows(factor).to_dense(), dense * factor[:, None])


@pytest.mark.parametrize("fixed", [False, True])
def test_rows_gather_in_any_order_and_slices_as_the_dense_rows(fixed: bool) -> None:
    x = wide(fixed=fixed)
    dense = x.to_dense()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(2))[:77]
    assert torch.equal(x[order].to_dense(), dense[order])
    assert torch.equal(x[20:50].to_dense(), dense[20:50])
    torch.testing.assert_close(as_dense(x[order].float()), dense[order].float())


def test_entries_in_shared_columns_sum_like_one_bag() -> None:
    x, y = wide(seed=3), wide(seed=4)
    shared = WideFeatures.hstack(x.dense, [x, y], shared=True)
    assert shared.sparse_width == x.sparse_width
    torch.testing.assert_close(shared.to_dense()[:, 3:], x.to_dense()[:, 3:] + y.to_dense()[:, 3:])


def test_a_loader_serves_the_rows_of_a_dense_loader() -> None:
    """Minibatches of WideFeatures (a fresh gather each) hold the rows a dense loader serves."""
    x, y = wide(), torch.arange(200) % 2
    dense = x.to_dense()
    served = tensor_loader(x, y, batch_size=32, minibatches_per_step=3, shuffle=True, seed=5)
    reference = tensor_loader(dense, y, batch_size=32, minibatches_per_step=3, shuffle=True, seed=5)
    for group, expected in zip(served, reference, strict=True):
        features = list(group.features())
        assert len(features) == len(list(expected))
        assert torch.equal(group.labels()[0], torch.cat([ye for _, ye, _ in expected]))
        for xb, (xe, _, _) in zip(features, expected, strict=True):
            assert torch.equal(xb.to_dense(), xe)


def test_moving_to_what_it_is_returns_itself() -> None:
    x = wide()
    assert x.to("cpu") is x and x.to(torch.float64) is x
    assert x.float().values.dtype == torch.float32 and x.float().indices.dtype == torch.int64


def test_concatenated_rows_are_the_dense_rows_one_after_another() -> None:
    """cat (a stream's row groups into one buffer): bags and fixed rows, and the fixed rows of
    parts that all have them stay fixed (gathered as views)."""
    parts = [wide(rows, seed) for rows, seed in ((30, 5), (1, 6), (12, 7))]
    joined = cat(parts)
    assert torch.equal(joined.to_dense(), torch.cat([p.to_dense() for p in parts]))
    assert joined.per_row is None
    generator = torch.Generator().manual_seed(8)
    fixed = [
        WideFeatures.fixed(
            torch.randn(n, 2, generator=generator),
            torch.randint(0, 9, (n, 3), generator=generator),
            torch.rand(n, 3, generator=generator),
            9,
        )
        for n in (4, 6)
    ]
    joined = cat(fixed)
    assert joined.per_row == 3
    order = torch.tensor([9, 0, 4, 5])
    assert torch.equal(joined[order].to_dense(), torch.cat([f.to_dense() for f in fixed])[order])
    tensors = [torch.ones(2, 3), torch.zeros(1, 3)]
    assert torch.equal(cat(tensors), torch.cat(tensors))  # plain tensors: torch.cat


def test_column_sums_and_bytes_are_the_dense_matrixs() -> None:
    x = wide()
    torch.testing.assert_close(x.column_sums(), x.to_dense().sum(0))
    assert x.nbytes == sum(t.nbytes for t in (x.dense, x.indptr, x.indices, x.values, x.rows))
    fixed = wide(fixed=True)  # no offsets or entry rows held, none made to count them
    assert fixed.nbytes == sum(t.nbytes for t in (fixed.dense, fixed.indices, fixed.values))
    assert fixed._indptr is None and fixed._rows is None
    torch.testing.assert_close(fixed.column_sums(), fixed.to_dense().sum(0))
