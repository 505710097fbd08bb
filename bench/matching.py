"""Probabilistic matching benchmark: our matching against Splink 4 (DuckDB) on the same records.

    .venv/bin/python bench/matching.py [--people 20000] [--seed 7] [--threshold 0.5]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_matching]
        [--splink-names separate|forename-surname] [--keep-db] [--reuse-db]
        [--profile FILE] [--incremental 0.01]

What it does, in one run:

1. Drops and recreates the bench database (PostgreSQL) and migrates it, then sets Django up
   in this process on it.
2. Generates PEOPLE people with ground truth (bench/matching_population.py: about 1.5 records
   each across a CRM, shop tills and a loyalty programme, with typos, nicknames, swapped
   names, missing fields, moved addresses, households) and imports them through the
   product's ingestion: `profiles.services.ingest_messages` with identify messages carrying
   the record's own external id (`crm_id`, `pos_id`, `loyalty_id`). Records merge at ingestion
   only where the product's deterministic rules say so: the same email, or the same phone
   written in the one format that normalizes (+1 ...). Those merges are correct by
   construction (no two people share an email or phone); the bench checks it.
3. Ours: `matching.services.match_run(full=True)` over the workspace's active profiles with
   the default settings (fields, blocking rules, EM): loading and decrypting the fields in
   batches, blocking, comparing, estimating, scoring and storing the candidates. Timed end to
   end, wall clock.
4. Splink: the same profiles, exported as a pandas DataFrame with the same normalized values
   (decrypted through the same selector, outside both timings), the same blocking rules (as
   derived columns), Splink's library comparisons for the same fields with
   term-frequency adjustments on names, u by random sampling (1e6 pairs, Splink's guidance),
   λ from deterministic rules (recall 0.7), m by EM sessions blocked on names, date of birth
   and postcode; `predict` at the same threshold. Timed from building the Linker to the
   predictions in pandas.
5. Precision, recall and F1 of both at the threshold against the true pairs (active profiles
   holding records of the same person; pairs outside every block count as missed), the
   candidate pairs, the times, the ratio ours/Splink, and PASS/FAIL for the two bars:
   our F1 >= Splink's - 0.005, and our time <= 2x Splink's.
6. With --incremental SHARE (1 % by default; 0 skips it): changes that share of the records,
   then times an incremental run twice from the same state, with the match keys the full run
   stored and without them (decrypting everyone), and says whether both proposed the same
   pairs; all of it is rolled back.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))


from bench._common import bench_database_name, drop_database, load_average, recreate_database  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_matching"
SETTINGS = "cdp.settings.test"
WORKSPACE_SLUG = "bench-matching"
BATCH = 500
F1_MARGIN = 0.005
TIME_RATIO_BAR = 2.0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=20_000, help="default 20000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=0.5, help="match probability")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--splink-names",
        choices=("separate", "forename-surname"),
        default="separate",
        help="Splink's name comparisons: NameComparison per name (default), or "
        "ForenameSurnameComparison (one comparison with Splink's own swap level)",
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="reuse a database a --keep-db run left (same --people and --seed): skip the import",
    )
    parser.add_argument("--profile", help="write a cProfile of our run to this file")
    parser.add_argument(
        "--incremental",
        type=float,
        default=0.01,
        help="then change this share of the records and time an incremental run with and "
        "without the stored match keys (0: skip)",
    )
    return parser.parse_args()


def _recreate_database(database_url: str) -> None:
    recreate_database(database_url)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": database_url}
    subprocess.run(
        [sys.executable, str(ROOT_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=ROOT_DIR,
        env=env,
        check=True,
        timeout=900,
    )


# --- import --------------------------------------------------------------------------------


def _identify(record: Any, index: int, traits: dict[str, Any]) -> Any:
    """The identify message of a source record (its own external id), at index seconds."""
    from bench.matching_population import ID_TYPES
    from profiles.contracts import InboundMessage

    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=index)
    return InboundMessage(
        type="identify",
        message_id=f"bench-{index}",
        received_at=at,
        timestamp=at,
        traits=dict(traits),
        context={
            "externalIds": [
                {"id": record.external_id, "type": ID_TYPES[record.source], "collection": "users"}
            ]
        },
    )


def _ingest(workspace: Any, items: list[tuple[Any, Any]]) -> list[Any]:
    """(record, message) pairs through the product's ingestion, by source in batches; the
    profile each message landed in."""
    from bench.matching_population import ID_TYPES
    from profiles import services
    from profiles.enums import SourceKind
    from profiles.models import Source

    sources = {}
    for name in ID_TYPES:
        found = Source.objects.filter(workspace=workspace, name=name).first()
        sources[name] = found or services.source_create(
            workspace=workspace, name=name, kind=SourceKind.IMPORT
        )
    by_source: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for position, (record, message) in enumerate(items):
        by_source[record.source].append((position, message))
    landed: list[Any] = [None] * len(items)
    for name, pending in by_source.items():
        for offset in range(0, len(pending), BATCH):
            chunk = pending[offset : offset + BATCH]
            outcome = services.ingest_messages(source=sources[name], messages=[m for _, m in chunk])
            for (position, _), profile_id in zip(chunk, outcome.profile_ids, strict=True):
                landed[position] = profile_id
    return landed


def _import(records: list[Any]) -> tuple[Any, list[uuid.UUID]]:
    """Every record through the product's ingestion; the profile each record ended in."""
    from profiles import selectors, services

    workspace = services.workspace_create(slug=WORKSPACE_SLUG, name="Matching bench")
    landed = _ingest(workspace, [(r, _identify(r, i, r.traits)) for i, r in enumerate(records)])
    survivors = selectors.profile_survivor_ids(workspace=workspace, profile_ids=landed)
    return workspace, [survivors[p] for p in landed]


def _incremental(workspace: Any, records: list[Any], share: float, threshold: float) -> None:
    """Change `share` of the records (half of them move: another record's address; half get a
    typo in the surname), then time the incremental run twice from the same state: with the
    match keys the full run stored (it decrypts the changed profiles and their block
    partners), and without them (it decrypts everyone, as every incremental run did before
    the keys). Everything it does is rolled back: the database stays as the full run left it
    (for --keep-db and --reuse-db)."""
    import random

    from django.db import transaction

    from matching import services
    from matching.models import MatchCandidate, MatchKeys

    rng = random.Random(3)
    changed = rng.sample(range(len(records)), max(1, int(len(records) * share)))
    items = []
    for n, k in enumerate(changed):
        record, traits = records[k], dict(records[k].traits)
        if n % 2:
            other = records[rng.randrange(len(records))].traits
            traits.update({f: other[f] for f in ("address", "city", "postcode") if f in other})
        elif traits.get("last_name"):
            traits["last_name"] = traits["last_name"] + "e"
        items.append((record, _identify(record, len(records) + n, traits)))

    def timed() -> tuple[Any, float, set[Any]]:
        started = time.perf_counter()
        run = services.match_run(workspace=workspace, threshold=threshold).run
        elapsed = time.perf_counter() - started
        proposed = set(
            MatchCandidate.objects.filter(workspace=workspace, status="proposed").values_list(
                "profile_a_id", "profile_b_id", "probability"
            )
        )
        return run, elapsed, proposed

    with transaction.atomic():
        _ingest(workspace, items)
        with transaction.atomic():
            MatchKeys.objects.filter(workspace=workspace).delete()
            every, every_time, every_found = timed()
            transaction.set_rollback(True)
        keyed, keyed_time, keyed_found = timed()
        transaction.set_rollback(True)
    print(
        f"\nincremental run after {len(changed)} records changed ({share:.0%}), load "
        f"{load_average()}"
    )
    for label, run, elapsed in (("stored keys", keyed, keyed_time), ("no keys", every, every_time)):
        print(
            f"  {label}: {run.profiles_changed} changed, decrypted {run.profiles_decrypted} of "
            f"{run.profiles_considered} profiles, {run.candidate_pairs} candidate pairs, "
            f"{run.proposed} proposed, time {elapsed:.2f} s"
        )
    same = {(a, b) for a, b, _ in keyed_found} == {(a, b) for a, b, _ in every_found}
    print(f"  same proposals: {'yes' if same else 'NO'}; "
          f"time ratio: {keyed_time / every_time:.3f} (stored keys / no keys)")  # fmt: skip


# --- evaluation ----------------------------------------------------------------------------


def _truth(records: list[Any], profile_of: list[uuid.UUID]) -> tuple[dict[Any, int], set[Any]]:
    """The person each active profile is, and the true pairs of profiles (ordered ids)."""
    people: dict[Any, set[int]] = defaultdict(set)
    for record, profile in zip(records, profile_of, strict=True):
        people[profile].add(record.person)
    impure = [p for p, persons in people.items() if len(persons) > 1]
    if impure:
        raise SystemExit(f"{len(impure)} profiles mix people: a deterministic merge was wrong")
    person_of = {profile: next(iter(persons)) for profile, persons in people.items()}
    by_person: dict[int, list[Any]] = defaultdict(list)
    for profile, person in person_of.items():
        by_person[person].append(profile)
    pairs = set()
    for profiles in by_person.values():
        ordered = sorted(profiles)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                pairs.add((a, b))
    return person_of, pairs


def _scores(found: set[Any], truth: set[Any]) -> tuple[float, float, float]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# --- splink --------------------------------------------------------------------------------


def _frame(workspace: Any, profile_ids: list[uuid.UUID]) -> Any:
    """The profiles' comparison fields as Splink input: the values our engine compares,
    normalized the same way, plus the derived columns our blocking rules key on."""
    import jellyfish
    import pandas as pd

    from matching import comparators as c
    from profiles import selectors

    keys = ("first_name", "last_name", "birthday", "email", "phone", "address", "city",
            "postcode")  # fmt: skip
    rows = []
    for start in range(0, len(profile_ids), 2000):
        chunk = profile_ids[start : start + 2000]
        found = selectors.profiles_match_fields(
            workspace=workspace, profile_ids=chunk, trait_keys=keys, identifier_types=()
        )
        for pk in chunk:
            t = found[pk][0]
            first, last = (
                c.normalize_name(t.get("first_name")),
                c.normalize_name(t.get("last_name")),
            )
            dob = c.normalize_date(t.get("birthday"))
            email, phone = c.normalize_email(t.get("email")), c.normalize_phone(t.get("phone"))
            postcode = c.normalize_postcode(t.get("postcode"))
            fn_mp = jellyfish.metaphone(first) or None if first else None
            ln_mp = jellyfish.metaphone(last) or None if last else None
            rows.append(
                {
                    "unique_id": str(pk),
                    "first_name": first,
                    "surname": last,
                    "dob": f"{dob[:4]}-{dob[4:6]}-{dob[6:]}" if dob else None,
                    "birth_year": dob[:4] if dob else None,
                    "email": email,
                    "email_local": email.partition("@")[0] if email else None,
                    "phone": phone,
                    "phone7": phone[-7:] if phone else None,
                    "address": c.normalize_text(t.get("address")),
                    "city": c.normalize_text(t.get("city")),
                    "postcode": postcode,
                    "fn_initial": first[:1] if first else None,
                    "ln_initial": last[:1] if last else None,
                    "fn_mp": fn_mp,
                    "ln_mp": ln_mp,
                    "name_lo": min(fn_mp, ln_mp) if fn_mp and ln_mp else None,
                    "name_hi": max(fn_mp, ln_mp) if fn_mp and ln_mp else None,
                }
            )
    return pd.DataFrame(rows)


def _splink(frame: Any, threshold: float, names: str) -> tuple[set[Any], int, float]:
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    # Splink logs every EM iteration at INFO; the figures below are what this bench reports.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("splink")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("splink").setLevel(logging.ERROR)
    if names == "forename-surname":
        name_comparisons = [
            cl.ForenameSurnameComparison("first_name", "surname").configure(
                term_frequency_adjustments=True
            )
        ]
    else:
        name_comparisons = [
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        ]
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            *name_comparisons,
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.EmailComparison("email"),
            cl.LevenshteinAtThresholds("phone", [1]),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.75]),
            cl.JaroWinklerAtThresholds("city", [0.92, 0.8]),
            cl.LevenshteinAtThresholds("postcode", [1]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("postcode", "fn_initial"),
            block_on("postcode", "ln_initial"),
            block_on("email_local"),
            block_on("phone7"),
            block_on("ln_mp", "birth_year"),
            block_on("name_lo", "name_hi"),
            block_on("fn_mp", "dob"),
        ],
    )
    started = time.perf_counter()
    linker = Linker(frame, settings, db_api=DuckDBAPI())
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("phone"), block_on("first_name", "surname", "dob")],
        recall=0.7,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname")
    )
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    predictions = linker.inference.predict(threshold_match_probability=threshold)
    result = predictions.as_pandas_dataframe()
    elapsed = time.perf_counter() - started
    left, right = result["unique_id_l"].tolist(), result["unique_id_r"].tolist()
    found = {tuple(sorted((uuid.UUID(a), uuid.UUID(b)))) for a, b in zip(left, right, strict=True)}
    return found, len(result), elapsed


def main() -> None:
    args = _parse()
    print(f"host: {platform.node()} python {platform.python_version()}, load {load_average()}")
    mapping = ROOT_DIR / "var" / f"bench_matching_{bench_database_name(args.database_url)}.json"
    if args.reuse_db:
        print(f"database: {args.database_url} (reused, records as in {mapping})")
    else:
        print(f"database: {args.database_url} (dropped and recreated)")
        _recreate_database(args.database_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = args.database_url
    import django

    django.setup()
    import logging

    for name in ("matching", "celery", "kombu", "activation"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from bench.matching_population import population
    from matching import services
    from profiles import selectors

    started = time.perf_counter()
    records = population(args.people, seed=args.seed)
    per_source = Counter(r.source for r in records)
    print(
        f"population: {args.people} people, {len(records)} records "
        f"({', '.join(f'{k} {v}' for k, v in sorted(per_source.items()))})"
    )
    if args.reuse_db:
        workspace, profile_of = _reuse(mapping, args)
    else:
        workspace, profile_of = _import(records)
        if args.keep_db:
            mapping.parent.mkdir(parents=True, exist_ok=True)
            mapping.write_text(
                json.dumps(
                    {
                        "people": args.people,
                        "seed": args.seed,
                        "profiles": [str(p) for p in profile_of],
                    }
                )
            )
    person_of, truth = _truth(records, profile_of)
    active = sorted(person_of)
    assert len(active) == selectors.profile_list(workspace=workspace).count()
    how = "reused" if args.reuse_db else "through ingest_messages"
    print(
        f"import: {time.perf_counter() - started:.1f} s {how}; "
        f"{len(active)} profiles after deterministic merges "
        f"({len(records) - len(active)} records merged on an exact email or phone), "
        f"{len(truth)} true pairs left for matching"
    )

    print(
        f"\nours (matching.services.match_run, threshold {args.threshold}), load {load_average()}"
    )
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = services.match_run(workspace=workspace, full=True, threshold=args.threshold)
    ours_time = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    run = result.run
    ours = {(p.profile_a, p.profile_b) for p in result.proposals}
    op, orc, of1 = _scores(ours, truth)
    timings = run.stats.get("timings", {})
    print(f"  candidate pairs {run.candidate_pairs}, proposed {run.proposed}")
    print(f"  precision {op:.4f}  recall {orc:.4f}  F1 {of1:.4f}")
    print(f"  time {ours_time:.2f} s (engine: "
          + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
          + "; the rest is reading, decrypting and storing)")  # fmt: skip

    frame = _frame(workspace, active)
    print(
        f"\nsplink {_splink_version()} (DuckDB, names: {args.splink_names}), load {load_average()}"
    )
    splink_found, splink_rows, splink_time = _splink(frame, args.threshold, args.splink_names)
    sp, sr, sf1 = _scores(splink_found, truth)
    print(f"  pairs at threshold {splink_rows}")
    print(f"  precision {sp:.4f}  recall {sr:.4f}  F1 {sf1:.4f}")
    print(f"  time {splink_time:.2f} s")

    if args.incremental:
        _incremental(workspace, records, args.incremental, args.threshold)

    ratio = ours_time / splink_time
    f1_ok = of1 >= sf1 - F1_MARGIN
    time_ok = ratio <= TIME_RATIO_BAR
    print(f"\nF1: ours {of1:.4f} vs splink {sf1:.4f} (bar: >= {sf1 - F1_MARGIN:.4f}): "
          f"{'PASS' if f1_ok else 'FAIL'}")  # fmt: skip
    print(f"time: ours {ours_time:.2f} s vs splink {splink_time:.2f} s, ratio: {ratio:.3f} "
          f"(bar: <= {TIME_RATIO_BAR}): {'PASS' if time_ok else 'FAIL'}")  # fmt: skip
    if not args.keep_db and not args.reuse_db:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)
    sys.exit(0 if f1_ok and time_ok else 1)


def _reuse(mapping: Path, args: argparse.Namespace) -> tuple[Any, list[uuid.UUID]]:
    """The workspace and record-to-profile map a --keep-db run left; its matching state is
    cleared so that this run starts from the same point."""
    from matching.models import MatchCandidate, MatchRun, MatchSettings
    from profiles import selectors

    saved = json.loads(mapping.read_text())
    if (saved["people"], saved["seed"]) != (args.people, args.seed):
        raise SystemExit(f"{mapping} holds --people {saved['people']} --seed {saved['seed']}")
    workspace = selectors.workspace_get(slug=WORKSPACE_SLUG)
    MatchCandidate.objects.filter(workspace=workspace).delete()
    MatchRun.objects.filter(workspace=workspace).delete()
    MatchSettings.objects.filter(workspace=workspace).delete()
    return workspace, [uuid.UUID(p) for p in saved["profiles"]]


def _splink_version() -> str:
    from importlib.metadata import version

    return version("splink")


if __name__ == "__main__":
    main()
