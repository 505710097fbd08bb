"""An incremental run blocks only the changed records and their partners, with the population's
blocks too big to pair left out (`engine.block(..., excluded=)`) and its term frequencies
given (`engine.prepare(..., frequencies=)`), from what `engine.record_keys` says of every
record. For random populations (several values per field, unordered rules, tiny block limits)
that must give exactly the pairs and the term-frequency weights of blocking everyone."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import engine

FIELDS = [
    {"name": "first_name", "source": "trait", "key": "first_name", "comparator": "name",
     "tf": True},
    {"name": "last_name", "source": "trait", "key": "last_name", "comparator": "name", "tf": True},
    {"name": "email", "source": "identifier", "key": "email", "comparator": "email"},
]  # fmt: skip
BLOCKING = [
    {"keys": ["first_name:first_letter", "last_name:first_letter"], "unordered": True},
    {"keys": ["email:local"]},
    {"keys": ["last_name:soundex", "email:domain"]},
]
NAMES = ["Ann", "Anna", "Bob", "Bea", "Cy", "Ada", "Abe", "Ng"]
LOCALS = ["a", "b", "ann", "bo", "", "a\x1fb"]  # a separator inside a value too
DOMAINS = ["x.example", "y.example"]

address = st.builds(
    lambda local, domain: f"{local}@{domain}", st.sampled_from(LOCALS), st.sampled_from(DOMAINS)
)
record = st.fixed_dictionaries(
    {
        "first_name": st.sampled_from([*NAMES, None]),
        "last_name": st.sampled_from([*NAMES, None]),
        "email": st.lists(address, max_size=3),
    }
)


def _records(rows: list[dict[str, Any]]) -> engine.Records:
    return engine.Records(
        ids=list(range(len(rows))),
        values={
            "first_name": [[r["first_name"]] if r["first_name"] else [] for r in rows],
            "last_name": [[r["last_name"]] if r["last_name"] else [] for r in rows],
            "email": [list(r["email"]) for r in rows],
        },
    )


def _subset(rows: list[dict[str, Any]], keep: list[int]) -> engine.Records:
    return _records([rows[k] for k in keep])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(record, min_size=2, max_size=25),
    changed_bits=st.lists(st.booleans(), min_size=25, max_size=25),
    max_block=st.integers(min_value=2, max_value=5),
)
def test_partners_and_exclusions_give_the_pairs_and_weights_of_blocking_everyone(
    rows: list[dict[str, Any]], changed_bits: list[bool], max_block: int
) -> None:
    # given
    cfg = engine.parse_config(
        fields=FIELDS, blocking=BLOCKING, name_swap=None, max_block_size=max_block
    )
    n = len(rows)
    changed = np.asarray(changed_bits[:n], dtype=bool)
    everyone = engine.prepare(cfg, _records(rows))
    expected = {tuple(p) for p in engine.block(cfg, everyone, changed).pairs(n).tolist()}

    # when: what an incremental run knows of everyone is record_keys' strings
    keys = engine.record_keys(cfg, everyone)
    sizes = Counter(k for per in keys for k in per if k[0] < engine.TF_TAG)
    too_big = {k for k, size in sizes.items() if size > max_block}
    mine = {k for r in np.nonzero(changed)[0].tolist() for k in keys[r] if k[0] < engine.TF_TAG}
    keep = sorted(
        {r for r in range(n) if changed[r]}
        | {r for r in range(n) if set(keys[r]) & (mine - too_big)}
    )
    excluded: dict[int, set[engine.Key]] = {}
    for tag, key in mine & too_big:
        excluded.setdefault(tag, set()).add(key)
    tf_values = {
        f: Counter(v for per in keys for t, v in per if t == engine.TF_TAG + f) for f in (0, 1)
    }
    frequencies = {
        f: engine.TermFrequencies(
            count=lambda value, c=counts: c[(value,)],
            present=sum(counts.values()),
            sum_p2=sum((k / sum(counts.values())) ** 2 for k in counts.values()),
        )
        for f, counts in tf_values.items()
        if counts
    }
    part = engine.prepare(cfg, _subset(rows, keep), frequencies)
    pairs = engine.block(cfg, part, changed[keep], excluded).pairs(len(keep))
    found = {(keep[a], keep[b]) for a, b in pairs.tolist()}

    # then: the same pairs, and each value's term frequency as over everyone
    assert found == expected
    for f in frequencies:
        whole, sub = everyone.tf[f], part.tf[f]
        assert whole is not None and sub is not None
        assert abs(sub[1] - whole[1]) < 1e-12
        for r_sub, r in enumerate(keep):
            if part.columns[f].present[r_sub]:
                p_sub = sub[0][part.columns[f].code[r_sub]]
                p_all = whole[0][everyone.columns[f].code[r]]
                assert abs(p_sub - p_all) < 1e-12
