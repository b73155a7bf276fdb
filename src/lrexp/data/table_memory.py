"""The memory guard of a wide table: before any category list or weight is allocated, the size
the encoding will take is estimated, and a table that would not fit stops with one line naming
the column and the fix, instead of being killed by the kernel mid-run."""

from __future__ import annotations

import os

from lrexp.errors import LrexpError

# What one weight costs over a fit, in bytes: float32 parameter, gradient, momentum and
# checkpoint copies, and L-BFGS' float64 parameters, gradient and its 2 x 10 history vectors.
BYTES_PER_WEIGHT = 256
# What one category costs besides its weights: its string in the state, the checkpoint and the
# lookup that matches values to it (Python and Arrow objects).
BYTES_PER_CATEGORY = 256
# The share of the available memory the encoding may take (the rows, Lightning and the
# evaluation need the rest).
MEMORY_SHARE = 0.5


def available_bytes() -> int:
    """The memory this process can still take: the kernel's MemAvailable, else free pages."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB"


def check_onehot(categories: dict[str, int], outputs: int, path: str) -> None:
    """One-hot columns with these many categories each: stop where their weights and lists
    would not fit, naming the largest column and data.categorical=hash."""
    if not categories:
        return
    per_category = BYTES_PER_CATEGORY + outputs * BYTES_PER_WEIGHT
    need = sum(categories.values()) * per_category
    budget = MEMORY_SHARE * available_bytes()
    if need > budget:
        name = max(categories, key=categories.__getitem__)
        raise LrexpError(
            f"data.path={path}: column {name!r} has {categories[name]:,} distinct values; their "
            f"one-hot weights need ~{_gib(need)}, {_gib(budget)} is available: set "
            "data.categorical=hash (hashed into 2^data.hash_bits weights)"
        )


def check_hashed(bits: int, outputs: int) -> None:
    """2^bits hashed weights per output: stop where they would not fit."""
    need = 2**bits * outputs * BYTES_PER_WEIGHT
    budget = MEMORY_SHARE * available_bytes()
    if need > budget:
        raise LrexpError(
            f"data.hash_bits={bits}: 2^{bits} weights need ~{_gib(need)}, {_gib(budget)} is "
            "available: lower data.hash_bits (e.g. data.hash_bits=20)"
        )
