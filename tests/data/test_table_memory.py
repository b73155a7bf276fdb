"""The memory guard: an encoding that would not fit stops in one line naming the column and the
fix; one that fits passes."""

from __future__ import annotations

import pytest

from lrexp.data import table_memory
from lrexp.errors import LrexpError


def test_the_available_memory_is_read_from_the_kernel() -> None:
    assert 2**20 < table_memory.available_bytes() < 2**50


def test_one_hot_columns_beyond_the_budget_name_the_largest_and_the_hash_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(table_memory, "available_bytes", lambda: 2 * 2**30)  # a 1 GiB budget
    per_category = table_memory.BYTES_PER_CATEGORY + 3 * table_memory.BYTES_PER_WEIGHT
    fits = 2**30 // per_category
    table_memory.check_onehot({"city": 50, "user": fits - 50}, 3, "t.csv")  # just fits
    with pytest.raises(
        LrexpError,
        match=r"column 'user' has [\d,]+ distinct values.*"
        r"data.categorical=hash",
    ):
        table_memory.check_onehot({"city": 50, "user": fits}, 3, "t.csv")


def test_hashed_weights_beyond_the_budget_ask_for_fewer_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(table_memory, "available_bytes", lambda: 2 * 2**30)
    table_memory.check_hashed(18, 1)
    with pytest.raises(LrexpError, match="data.hash_bits=30: .*lower data.hash_bits"):
        table_memory.check_hashed(30, 1)
