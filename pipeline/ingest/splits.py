"""Split assignment by field (never by pixel or tile), done once at ingest and stored in the
dataset version's manifest, so every later stage and run sees the same split."""

from __future__ import annotations

import hashlib
import math

from pipeline.conventions import UNLABELLED
from pipeline.errors import DataError
from pipeline.ingest.layouts.base import Field

STRATEGIES = ("stratified", "contiguous")
SPLIT_RULES = {
    "stratified": "fields of each condition shuffled (seeded by field id) and interleaved",
    "contiguous": "blocks of consecutive frames per sequence; the last block is the test split",
}


def _quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over groups in proportion to `sizes` (largest remainder, ties by name)."""
    n = sum(sizes.values())
    exact = {g: total * k / n for g, k in sizes.items()} if n else {}
    out = {g: math.floor(x) for g, x in exact.items()}
    for g in sorted(exact, key=lambda g: (out[g] - exact[g], g))[: total - sum(out.values())]:
        out[g] += 1
    return out


def assign_splits(
    fields: list[Field], strategy: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Deterministic split by field: field_id -> train | val | test | unlabelled.

    ``stratified``: fields of each group are shuffled (seeded by field id, not by order) and the
    groups interleaved in a seeded order, so each split draws evenly from every condition.
    ``contiguous``: frames of each sequence (group) stay in time order; the last block of every
    sequence goes to test and the block before it to val, block sizes in proportion to the
    sequence lengths.
    At least one field goes to val and test whenever there are three or more labelled fields.
    A field is in exactly one split; unlabelled fields are never in train, val or test.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"split strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must "
            "be in [0, 1) and their sum below 1"
        )
    ids = [f.field_id for f in fields]
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicate field ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    labelled = [f for f in fields if f.labels]
    out = {f.field_id: UNLABELLED for f in fields if not f.labels}
    n = len(labelled)
    n_test = max(1, math.ceil(n * test_fraction)) if n >= 3 else 0
    n_val = max(1, math.ceil(n * val_fraction)) if n >= 3 else 0

    def key(f: Field) -> str:
        return hashlib.sha256(f"{seed}:{f.field_id}".encode()).hexdigest()

    groups: dict[str, list[Field]] = {}
    for f in labelled:
        groups.setdefault(f.group, []).append(f)
    if strategy == "contiguous":
        sizes = {g: len(v) for g, v in groups.items()}
        t_q, v_q = _quotas(sizes, n_test), _quotas(sizes, n_val)
        for g, members in groups.items():
            frames = sorted(members, key=lambda f: f.field_id)[::-1]  # latest first
            for i, f in enumerate(frames):
                out[f.field_id] = (
                    "test" if i < t_q[g] else "val" if i < t_q[g] + v_q[g] else "train"
                )
        return out
    # Groups take turns in a seeded order, so with fewer test slots than groups the group left
    # out of test changes with the seed (and comes first for val) instead of always the last name.
    turn = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:group:{g}".encode()).hexdigest())
    queues = [sorted(groups[g], key=key) for g in turn]
    order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    for i, f in enumerate(order):
        out[f.field_id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out
