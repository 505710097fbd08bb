"""The matching engine without a database: comparators, blocking, EM, scoring, settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from matching import comparators as c
from matching import defaults, engine
from matching import fellegi_sunter as fs

NULL = c.NULL_LEVEL


def levels(kind: str, left: list[str | None], right: list[str | None], **kw: object) -> list[int]:
    comparator = c.make_comparator(kind, kw.get("thresholds"))  # type: ignore[arg-type]
    vocabulary: dict[str, int] = {}
    a = comparator.prepare(
        [None if v is None else comparator.normalize(v) for v in left], vocabulary
    )
    b = comparator.prepare(
        [None if v is None else comparator.normalize(v) for v in right], vocabulary
    )
    index = np.arange(len(left))
    return comparator.compare(a, b, index, index).tolist()


def test_name_levels() -> None:
    # when
    found = levels(
        "name",
        ["Margaret", "Robert", "Jonathon", "Claire", "Anna", None, "Zoë"],
        ["margaret", "Bob", "Jonathan", "Clara", "Bartholomew", "Anna", "zoe"],
    )

    # then: exact, nickname, jw >= 0.92, jw >= 0.8, different, missing, accents ignored
    assert found == [0, 1, 3, 4, 5, NULL, 0]


def test_date_levels() -> None:
    # when
    found = levels(
        "date",
        ["1970-03-14", "1982-11-02", "1990-05-17", "1979-12-24", "1975-12-24", "not a date"],
        ["1970/3/14", "1982-02-11", "1990-05-18", "1980-12-24", "2001-01-01", "1970-01-01"],
    )

    # then: exact, day and month swapped, one typo, year off by one, different, missing
    assert found == [0, 1, 2, 3, 4, NULL]


def test_postcode_email_phone_exact_and_levenshtein_levels() -> None:
    assert levels("postcode", ["SW1A 1AA", "SW1A 1AA", "SW1A 1AA", "94107"],
                  ["sw1a1aa", "SW1A 1AB", "SW1B 2CD", "10001"]) == [0, 1, 2, 3]  # fmt: skip
    assert levels(
        "email",
        ["Ann.Lee@example.com", "ann.lee@example.com", "ann.lee@example.com", "ann@example.com"],
        ["ann.lee@example.com", "ann.lee@example.org", "ann.lea@example.net", "zed@example.com"],
    ) == [0, 1, 2, 3]
    assert levels("phone", ["+1 (415) 555-0147", "4155550147", "4155550147", "12"],
                  ["415.555.0147", "4155550148", "2125550199", "4155550147"]) == [
        0, 1, 2, NULL,
    ]  # fmt: skip
    assert levels("exact", ["Gold", "gold "], ["GOLD", "silver"]) == [0, 1]
    assert levels("levenshtein", ["abcdef", "abcdef", "abcdef", "abcdef"],
                  ["abcdef", "abcdxf", "abxdxf", "uvwxyz"]) == [0, 1, 2, 3]  # fmt: skip
    assert levels("jaro_winkler", ["martha", "martha", "martha"],
                  ["martha", "marhta", "zzz"]) == [0, 1, 3]  # fmt: skip


def config(**kw: object) -> engine.MatchConfig:
    return engine.parse_config(
        fields=kw.get("fields", defaults.DEFAULT_FIELDS),
        blocking=kw.get("blocking", defaults.DEFAULT_BLOCKING),
        name_swap=kw.get("name_swap", defaults.DEFAULT_NAME_SWAP),
    )


def records(rows: list[dict[str, Any]], cfg: engine.MatchConfig) -> engine.Records:
    return engine.Records(
        ids=list(range(len(rows))),
        values={
            spec.name: [
                list(v) if isinstance(v := row.get(spec.name), list) else [] if v is None else [v]
                for row in rows
            ]
            for spec in cfg.fields
        },
    )


def test_swapped_first_and_last_names_are_blocked_together_and_compared_crosswise() -> None:
    # given
    cfg = config(blocking=[{"keys": ["first_name:metaphone", "last_name:metaphone"],
                            "unordered": True}])  # fmt: skip
    rows = [
        {"first_name": "Ngozi", "last_name": "Adeyemi"},
        {"first_name": "Adeyemi", "last_name": "Ngozi"},
        {"first_name": "Ngozi", "last_name": "Okafor"},
    ]
    prepared = engine.prepare(cfg, records(rows, cfg))

    # when
    blocked = engine.block(cfg, prepared)
    pairs = blocked.pairs(prepared.n)
    found = engine.compare(cfg, prepared, pairs)

    # then
    assert pairs.tolist() == [[0, 1]]
    assert found[0, 0] == c.NameComparator.SWAPPED
    assert found[0, 1] == 0  # last names agree once crossed


def test_pairs_from_keys_pairs_each_block_and_skips_oversized_ones() -> None:
    # given: records 0-2 share key 7, 3-4 share key 9, 5 is alone; block 8 has 4 records
    records_ = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    keys = np.array([7, 7, 7, 9, 9, 5, 8, 8, 8, 8])
    stats = engine.BlockingStats()

    # when
    codes = engine.pairs_from_keys(records_, keys, 10, max_block_size=3, stats=stats)

    # then
    assert engine.decode_pairs(codes, 10).tolist() == [[0, 1], [0, 2], [1, 2], [3, 4]]
    assert (stats.skipped_blocks, stats.skipped_records) == (1, 4)


def test_pairs_from_keys_with_changed_records_keeps_only_their_pairs() -> None:
    # when
    codes = engine.pairs_from_keys(
        np.array([0, 1, 2, 3]), np.array([1, 1, 1, 1]), 4, 100, changed=np.array([0, 0, 1, 0], bool)
    )

    # then
    assert engine.decode_pairs(codes, 4).tolist() == [[0, 2], [1, 2], [2, 3]]


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("bcdfghklmnprstvz")) + rng.choice(list("aeiou"))
                   for _ in range(3))  # fmt: skip


def _population(n: int, rng: np.random.Generator) -> list[dict[str, object]]:
    """n people; names, dates and postcodes drawn from pools that grow with n (a bigger
    customer base spans more postcodes), as real populations do."""
    first = [_word(rng) for _ in range(300)]
    last = [_word(rng) for _ in range(max(2000, n))]
    return [
        {
            "first_name": first[rng.integers(300)],
            "last_name": last[rng.integers(len(last))],
            "birthday": f"19{rng.integers(40, 99)}-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}",
            "postcode": f"{rng.integers(10_000, 10_000 + n // 20)}",
        }
        for _ in range(n)
    ]


def test_blocking_grows_near_linearly() -> None:
    # given
    cfg = config()
    rng = np.random.default_rng(3)

    # when
    sizes = []
    for n in (2000, 8000):
        prepared = engine.prepare(cfg, records(_population(n, rng), cfg))
        sizes.append(len(engine.block(cfg, prepared).codes))

    # then: 4x the records, far less than the 16x of all pairs
    assert sizes[1] < 6 * sizes[0]


def test_identifier_fields_compare_every_value_and_keep_the_best_level() -> None:
    # given
    cfg = config(
        fields=[{"name": "email", "source": "identifier", "key": "email", "comparator": "email"}],
        blocking=[{"keys": ["email:domain"]}],
        name_swap=[],
    )
    rows = [
        {"email": ["ann@example.com", "a.lee@example.org"]},
        {"email": ["zed@example.org", "a.lee@example.org"]},
        {"email": ["zed@example.com"]},
    ]
    prepared = engine.prepare(cfg, records(rows, cfg))

    # when
    found = engine.compare(cfg, prepared, np.array([[0, 1], [0, 2]]))

    # then
    assert found[:, 0].tolist() == [0, 3]


def test_em_recovers_known_m_and_u_from_unlabelled_vectors() -> None:
    # given: two fields, pairs drawn with known m, u and a 20 % match share
    rng = np.random.default_rng(11)
    m = [np.array([0.8, 0.15, 0.05]), np.array([0.7, 0.3])]
    u = [np.array([0.05, 0.15, 0.8]), np.array([0.1, 0.9])]
    n = 200_000
    is_match = rng.random(n) < 0.2
    vectors = np.stack(
        [
            np.where(is_match, rng.choice(3, n, p=m[0]), rng.choice(3, n, p=u[0])),
            np.where(is_match, rng.choice(2, n, p=m[1]), rng.choice(2, n, p=u[1])),
        ],
        axis=1,
    ).astype(np.int8)
    third = rng.choice(2, n, p=[0.5, 0.5])  # a third field, present for half of the pairs
    vectors = np.column_stack([vectors, np.where(third == 1,
        np.where(is_match, 0, 1), c.NULL_LEVEL)]).astype(np.int8)  # fmt: skip
    patterns, counts, _ = fs.collapse(vectors, [3, 2, 2])
    start = fs.Parameters(
        prior=0.5, m=[fs.default_m(3), fs.default_m(2), fs.default_m(2)],
        u=[np.full(3, 1 / 3), np.full(2, 0.5), np.full(2, 0.5)],
    )  # fmt: skip

    # when
    result = fs.expectation_maximization(patterns, counts, start)

    # then
    assert result.converged
    assert result.parameters.prior == pytest.approx(0.2, abs=0.01)
    for f in range(2):
        assert result.parameters.m[f] == pytest.approx(m[f], abs=0.02)
        assert result.parameters.u[f] == pytest.approx(u[f], abs=0.02)


def test_estimate_prior_is_the_expected_share_of_matches() -> None:
    # given: 10 pairs of overwhelming evidence, 90 of none, among 1000 pairs
    evidence = np.r_[np.full(10, 60.0), np.full(90, -60.0)]

    # when
    prior, iterations = fs.estimate_prior(evidence, 1000)

    # then
    assert prior == pytest.approx(0.01, rel=1e-3)
    assert iterations >= 1


def test_score_adds_the_prior_and_each_present_field() -> None:
    # given
    parameters = fs.Parameters(prior=0.2, m=[np.array([0.8, 0.2])], u=[np.array([0.1, 0.9])])

    # when
    weight, probability, per_field = fs.score(np.array([[0], [1], [c.NULL_LEVEL]]), parameters)

    # then
    assert per_field[:, 0].tolist() == pytest.approx([3.0, np.log2(0.2 / 0.9), 0.0])
    assert weight.tolist() == pytest.approx([1.0, np.log2(0.2 / 0.9) - 2.0, -2.0])
    assert probability[0] == pytest.approx(2 / 3)


def test_engine_run_finds_duplicates_in_a_synthetic_population() -> None:
    # given: 1500 people, 300 of them seen twice with a typo in the first name
    rng = np.random.default_rng(5)
    rows = _population(1500, rng)
    twins = []
    for k in range(300):
        copy = dict(rows[k])
        name = str(copy["first_name"])
        copy["first_name"] = name[:-1] + ("x" if name[-1] != "x" else "y")
        twins.append(copy)
    cfg = config(fields=[f for f in defaults.DEFAULT_FIELDS if f["name"] in
                         ("first_name", "last_name", "birthday", "postcode")],
                 blocking=[{"keys": ["last_name"]}, {"keys": ["birthday"]}])  # fmt: skip

    # when
    result = engine.run(cfg, records(rows + twins, cfg))

    # then
    found = {tuple(p) for p, prob in zip(result.pairs.tolist(), result.probability, strict=True)
             if prob >= 0.5}  # fmt: skip
    truth = {(k, 1500 + k) for k in range(300)}
    assert len(found & truth) >= 290
    assert len(found - truth) <= 10
    assert result.estimate is not None and len(result.estimate.sessions) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": []}, "fields: a non-empty list"),
        ({"fields": [{"name": "x", "source": "trait", "key": "x", "comparator": "soundalike"}]},
         "comparator: one of"),
        ({"fields": [{"name": "x", "source": "cookie", "key": "x", "comparator": "exact"}]},
         "source: one of"),
        ({"fields": [{"name": "x", "source": "trait", "key": "x", "comparator": "jaro_winkler",
                      "thresholds": [0.7, 0.9]}]}, "highest first"),
        ({"blocking": [{"keys": ["nope"]}]}, "no comparison field named 'nope'"),
        ({"blocking": [{"keys": ["postcode:reverse"]}]}, "unknown transform 'reverse'"),
        ({"name_swap": ["first_name", "postcode"]}, "name_swap: both fields"),
        ({"fields": [{"name": "c", "source": "trait", "key": "c", "comparator": "exact",
                      "tf": True, "group": "g"}]}, "ungrouped fields only"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_with_the_setting_named(
    change: dict[str, object], message: str
) -> None:
    # given
    settings: dict[str, object] = {
        "fields": defaults.DEFAULT_FIELDS,
        "blocking": [{"keys": ["postcode"]}] if "fields" in change else defaults.DEFAULT_BLOCKING,
        "name_swap": [] if "fields" in change else defaults.DEFAULT_NAME_SWAP,
        **change,
    }

    # when / then
    with pytest.raises(engine.ConfigError, match=message):
        engine.parse_config(**settings)  # type: ignore[arg-type]


def test_hand_set_parameters_per_field_derive_the_group_column() -> None:
    # given
    cfg = config()
    data = {"prior": 0.001, "fields": {}}
    for spec, size in zip(cfg.fields, cfg.sizes(), strict=True):
        data["fields"][spec.name] = {  # type: ignore[index]
            "m": fs.default_m(size).tolist(),
            "u": fs.disagreement_prior(size).tolist(),
        }

    # when
    parameters = engine.parameters_from_json(cfg, data)

    # then: the location group's all-exact combination weighs the sum of its fields' weights
    columns = cfg.model()
    location = next(k for k, col in enumerate(columns) if col.name == "location")
    per_field = sum(np.log2(fs.default_m(s)[0] / fs.disagreement_prior(s)[0]) for s in (4, 4, 4))
    all_exact = 1 * 1 + 1 * 5 + 1 * 25 - 1
    weights = fs.level_weights(parameters)[location]
    assert weights[all_exact] == pytest.approx(per_field)
