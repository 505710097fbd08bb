"""Compile audience rules (the JSON language of schema.json, documented in docs/audiences.md)
into one SQL query over the workspace's profiles.

Every condition becomes a predicate on the profile row: a typed JSON test of its attributes, an
EXISTS over its events or computed values, or, for counts and totals, an EXISTS over the events
grouped by profile (`GroupedExists`, which PostgreSQL joins as a hash semi join instead of
running a subquery per profile). Groups become AND/OR/NOT; lifecycle stages and other audiences
are compiled inline, so the result is one statement whatever the nesting. Every predicate is
definite (never NULL), so NOT is always the complement.

Semantic checks happen while compiling, with the JSON pointer of the part at fault: traits must
be plain attributes of the workspace, event properties must not be sealed personal data,
computed traits, stages and audiences must exist, and references must not loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from django.db.models import (
    Avg,
    BooleanField,
    Count,
    DateTimeField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from activation.enums import ComputedTraitKind
from activation.exceptions import RuleError
from activation.models import Audience, ComputedTrait, ComputedTraitValue, LifecycleStage
from activation.rules.jsonsql import JsonNumber, JsonPredicate
from profiles import selectors as profile_selectors

SCHEMA_PATH = Path(__file__).with_name("schema.json")
# Bounds on one audience's compiled size (conditions, counting those of the stages and
# audiences it refers to): a rule beyond them is a mistake, and would be a huge statement.
MAX_CONDITIONS = 200
MAX_DEPTH = 12
# Bound on the JSON nesting of a rules document, checked before the schema: jsonschema recurses
# several frames per level, and a few hundred levels (2.5 KB of "not") were a RecursionError.
# Above anything MAX_DEPTH groups need (their conditions are a few levels deep), so the
# compiler's own check still names a group too deep.
MAX_NESTING = 3 * MAX_DEPTH + 12

NUMERIC_KINDS = frozenset(
    {
        ComputedTraitKind.COUNT,
        ComputedTraitKind.SUM,
        ComputedTraitKind.AVG,
        ComputedTraitKind.MIN,
        ComputedTraitKind.MAX,
        ComputedTraitKind.UNIQUE_COUNT,
    }
)
# Kinds whose value is 0, not absent, for a profile without matching events; values of 0 are
# not stored (see activation.computed), so conditions supply them.
ZERO_DEFAULT_KINDS = frozenset(
    {ComputedTraitKind.COUNT, ComputedTraitKind.UNIQUE_COUNT, ComputedTraitKind.SUM}
)
AGGREGATES = {"sum": Sum, "avg": Avg, "min": Min, "max": Max}
_LOOKUPS = {"=": "exact", "<": "lt", ">": "gt", "<=": "lte", ">=": "gte"}
ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the rule language (activation/rules/schema.json)."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def pointer(parts: Any) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(escaped) if escaped else "/"


def _message(error: ValidationError) -> str:
    """jsonschema's message, except where it would print the schema instead of the problem."""
    if error.validator == "not" and isinstance(error.validator_value, dict):
        required = error.validator_value.get("required")
        if required == ["value"]:
            return "this operator takes no value"
        if required:
            return " and ".join(required) + " cannot be used together"
    if error.validator == "unevaluatedProperties":
        return error.message.replace("Unevaluated properties", "Properties")
    return error.message


def _check_nesting(rules: Any) -> None:
    """Raise RuleError at the first part nested deeper than MAX_NESTING (a loop, not
    recursion: the document may be nested as deep as its parser allowed)."""
    if not isinstance(rules, dict | list):
        return
    stack: list[tuple[Any, tuple[Any, ...]]] = [(rules, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_NESTING:
            raise RuleError(pointer(path), f"nested too deeply (at most {MAX_DEPTH} groups)")
        parts = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((child, (*path, k)) for k, child in parts if isinstance(child, dict | list))


def check_schema(rules: Any) -> None:
    """Raise RuleError for the most relevant schema violation, with its JSON pointer."""
    _check_nesting(rules)
    error = best_match(_validator().iter_errors(rules))
    if error is not None:
        raise RuleError(pointer(error.absolute_path), _message(error))


class _CycleError(RuleError):
    """A reference that leads back to the stage or audience it starts from."""


class GroupedExists(Expression):
    """`EXISTS (SELECT 1 FROM (<grouped events>) g WHERE g.profile_id = <profile>)`.

    A correlated EXISTS whose subquery aggregates cannot become a join, so PostgreSQL would run
    it once per profile; over a derived table of per-profile groups it is a semi (or, negated,
    anti) join against one pass of aggregation, as hand-written SQL would do it."""

    conditional = True

    def __init__(self, queryset: QuerySet[Any], outer: str = "pk") -> None:
        super().__init__(output_field=BooleanField())
        self.subquery = Subquery(queryset)
        self.outer = F(outer)

    def get_source_expressions(self) -> list[Any]:
        return [self.subquery, self.outer]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.subquery, self.outer = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sub_sql, sub_params = compiler.compile(self.subquery)
        outer_sql, outer_params = compiler.compile(self.outer)
        column = connection.ops.quote_name("profile_id")
        return (
            f"EXISTS (SELECT 1 FROM {sub_sql} grouped WHERE grouped.{column} = {outer_sql})",  # noqa: S608
            (*sub_params, *outer_params),
        )


def _parse_date(text: str, *, end: bool) -> tuple[datetime, bool]:
    """(moment, is a whole day): a date is its day in UTC, from its start or (end) to its end."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return (start + timedelta(days=1) if end else start), True
    moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # In UTC now, where the database compares: 9999-12-31T23:00-14:00 raises OverflowError.
    return moment.astimezone(UTC), False


@dataclass
class Compiler:
    """One compilation: the workspace, the evaluation time, optional profile restriction, and
    what has been looked up so far."""

    workspace: Any
    at: datetime
    profile_ids: list[Any] | None = None
    stack: list[tuple[str, str]] = field(default_factory=list)
    conditions: int = 0
    negations: int = 0  # how many NOTs enclose the condition being compiled
    _attribute_keys: frozenset[str] | None = None
    _sealed_keys: Container[str] | None = None
    _computed: dict[str, ComputedTrait | None] = field(default_factory=dict)

    # --- lookups --------------------------------------------------------------------------

    def attribute_keys(self) -> frozenset[str]:
        if self._attribute_keys is None:
            self._attribute_keys = profile_selectors.trait_keys_attribute(workspace=self.workspace)
        return self._attribute_keys

    def sealed_keys(self) -> Container[str]:
        if self._sealed_keys is None:
            self._sealed_keys = profile_selectors.event_property_keys_sealed(
                workspace=self.workspace
            )
        return self._sealed_keys

    def computed_trait(self, key: str) -> ComputedTrait | None:
        if key not in self._computed:
            self._computed[key] = ComputedTrait.objects.filter(
                workspace=self.workspace, key=key
            ).first()
        return self._computed[key]

    def events(self) -> QuerySet[Any]:
        return profile_selectors.event_list(workspace=self.workspace)

    # --- the tree -------------------------------------------------------------------------

    def compile(self, node: dict[str, Any], path: tuple[Any, ...] = ()) -> Q:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise RuleError(
                pointer(path), f"more than {MAX_CONDITIONS} conditions (counting references)"
            )
        if len(path) > 3 * MAX_DEPTH:
            raise RuleError(pointer(path), f"nested deeper than {MAX_DEPTH} groups")
        ((kind, body),) = node.items()
        here = (*path, kind)
        if kind in ("all", "any"):
            parts = [self.compile(child, (*here, i)) for i, child in enumerate(body)]
            combined = parts[0]
            for part in parts[1:]:
                combined = combined & part if kind == "all" else combined | part
            return combined
        if kind == "not":
            self.negations += 1
            try:
                return ~self.compile(body, here)
            finally:
                self.negations -= 1
        handlers: dict[str, Callable[[Any, tuple[Any, ...]], Q]] = {
            "trait": self.trait,
            "computed": self.computed,
            "profile": self.profile_field,
            "event": self.event,
            "sequence": self.sequence,
            "lifecycle": self.lifecycle,
            "in_audience": self.in_audience,
        }
        return handlers[kind](body, here)

    # --- traits -----------------------------------------------------------------------------

    def _bounds(self, days: int) -> tuple[str, str]:
        """ISO texts bounding `within_last_days` for date values stored as text: from `days`
        before `at`, to `at` (inclusive to the second)."""
        lower = (self.at - timedelta(days=days)).astimezone(UTC).strftime(ISO_SECONDS)
        upper = (self.at + timedelta(seconds=1)).astimezone(UTC).strftime(ISO_SECONDS)
        return lower, upper

    def json_test(
        self, column: str, key: str, body: dict[str, Any], *, definite: bool = False
    ) -> JsonPredicate:
        op: str = body["op"]
        value: Any = body.get("value")
        bounds = self._bounds(int(value)) if op == "within_last_days" else None
        return JsonPredicate(column, key, op, value, bounds=bounds, definite=definite)

    def trait(self, body: dict[str, Any], path: tuple[Any, ...]) -> Q:
        key = body["key"]
        if key not in self.attribute_keys():
            raise RuleError(
                pointer((*path, "key")),
                f"trait {key!r} is not classified as a plain attribute in this workspace: "
                "personal-data and unclassified traits are sealed and cannot be used in rules",
            )
        # Under a NOT the test must be FALSE, not NULL, for a profile without the trait.
        return Q(self.json_test("attributes", key, body, definite=self.negations > 0))

    def computed(self, body: dict[str, Any], path: tuple[Any, ...]) -> Q:
        key, op = body["key"], body["op"]
        value: Any = body.get("value")
        trait = self.computed_trait(key)
        if trait is None:
            raise RuleError(pointer((*path, "key")), f"no computed trait {key!r} in this workspace")
        if not trait.enabled:
            raise RuleError(pointer((*path, "key")), f"computed trait {key!r} is disabled")
        numeric = trait.kind in NUMERIC_KINDS
        if numeric and op in ("within_last_days", "contains"):
            raise RuleError(
                pointer((*path, "op")), f"{op} does not apply to a {trait.kind} computed trait"
            )
        if op == "contains" and not isinstance(value, str):
            raise RuleError(pointer((*path, "value")), "contains takes text for a computed trait")
        if numeric and op not in ("exists", "not_exists"):
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
                raise RuleError(
                    pointer((*path, "value")),
                    f"computed trait {key!r} ({trait.kind}) is a number: compare it with numbers",
                )
        rows = ComputedTraitValue.objects.filter(trait=trait, profile_id=OuterRef("pk"))
        if op == "exists":
            return Q(Exists(rows))
        if op == "not_exists":
            return ~Q(Exists(rows))
        test = self._value_test(op, value)
        if trait.kind in ZERO_DEFAULT_KINDS and _holds(0, op, value):
            # No row means 0, which passes: every profile but those whose value fails.
            return ~Q(Exists(rows.exclude(test)))
        return Q(Exists(rows.filter(test)))

    def _value_test(self, op: str, value: Any) -> Q:
        """A test of ComputedTraitValue's number/text columns."""
        if op in ("in", "not_in"):
            either = Q()
            for v in value:
                either |= self._value_test("=", v)
            return either if op == "in" else Q(value__isnull=False) & ~either
        if op == "!=":
            return Q(value__isnull=False) & ~self._value_test("=", value)
        if op == "within_last_days":
            lower, upper = self._bounds(value)
            return Q(text__gte=lower, text__lt=upper)
        if op == "contains":
            return Q(text__icontains=str(value))
        if isinstance(value, bool):
            return Q(text="true" if value else "false", number__isnull=True)
        if isinstance(value, int | float):
            return Q(**{f"number__{_LOOKUPS[op]}": value})
        return Q(**{f"text__{_LOOKUPS[op]}": value})

    def profile_field(self, body: dict[str, Any], path: tuple[Any, ...]) -> Q:
        name, op = body["field"], body["op"]
        value: Any = body.get("value")
        if op == "exists":
            return Q(**{f"{name}__isnull": False})
        if op == "not_exists":
            return Q(**{f"{name}__isnull": True})
        if op == "within_last_days":
            # One range lookup: negated, Django adds a single IS NULL (two lookups add one
            # each, which skews PostgreSQL's estimate of the complement).
            since = self.at - timedelta(days=int(value))
            return Q(**{f"{name}__range": (since, self.at)})
        if not isinstance(value, str):
            raise RuleError(
                pointer((*path, "value")), f"{name} compares with a date, not {value!r}"
            )
        moment = self._date(value, (*path, "value"), end=op in (">", "<="))
        return Q(**{f"{name}__{_LOOKUPS[op]}": moment})

    def _date(self, text: str, path: tuple[Any, ...], *, end: bool) -> datetime:
        try:
            moment, whole_day = _parse_date(text, end=end)
        except ValueError:
            raise RuleError(pointer(path), f"{text!r} is not an ISO 8601 date") from None
        except OverflowError:  # a day's end, or the moment in UTC, past the year 9999
            raise RuleError(pointer(path), f"{text!r} is out of the range of dates") from None
        if whole_day and end:
            # a whole day's end is the next midnight; comparisons stop just before it
            moment -= timedelta(microseconds=1)
        return moment

    # --- events -----------------------------------------------------------------------------

    def filtered_events(self, body: dict[str, Any], path: tuple[Any, ...]) -> QuerySet[Any]:
        """The workspace's events named body["name"] that pass its property filters."""
        events = self.events().filter(name=body["name"])
        for i, where in enumerate(body.get("where", ())):
            prop = where["property"]
            if prop in self.sealed_keys():
                raise RuleError(
                    pointer((*path, "where", i, "property")),
                    f"event property {prop!r} is personal data, sealed at collection: "
                    "rules cannot read it",
                )
            events = events.filter(self.json_test("properties", prop, where))
        return events

    def _windowed(
        self, events: QuerySet[Any], body: dict[str, Any], path: tuple[Any, ...]
    ) -> QuerySet[Any]:
        if "within_last_days" in body:
            since = self.at - timedelta(days=body["within_last_days"])
            return events.filter(timestamp__gte=since, timestamp__lte=self.at)
        if "between" in body:
            start = self._date(body["between"]["from"], (*path, "between", "from"), end=False)
            stop = self._date(body["between"]["to"], (*path, "between", "to"), end=True)
            if stop < start:
                raise RuleError(pointer((*path, "between")), "from is after to")
            return events.filter(timestamp__gte=start, timestamp__lte=min(stop, self.at))
        return events.filter(timestamp__lte=self.at)

    def _restricted(self, events: QuerySet[Any]) -> QuerySet[Any]:
        if self.profile_ids is None:
            return events
        return events.filter(profile_id__in=self.profile_ids)

    def event(self, body: dict[str, Any], path: tuple[Any, ...]) -> Q:
        events = self._windowed(self.filtered_events(body, path), body, path)
        aggregate = body.get("aggregate")
        count = body.get("count", {"op": ">=", "value": 1})
        if aggregate is not None:
            prop = aggregate["property"]
            if prop in self.sealed_keys():
                raise RuleError(
                    pointer((*path, "aggregate", "property")),
                    f"event property {prop!r} is personal data, sealed at collection: "
                    "rules cannot read it",
                )
            having = {f"agg__{_LOOKUPS.get(aggregate['op'], 'exact')}": aggregate["value"]}
            grouped = (
                self._restricted(events)
                .values("profile_id")
                .annotate(
                    n=Count("*"), agg=AGGREGATES[aggregate["fn"]](JsonNumber("properties", prop))
                )
            )
            if aggregate["op"] == "!=":
                grouped = grouped.exclude(agg=aggregate["value"]).filter(agg__isnull=False)
            else:
                grouped = grouped.filter(**having)
            if "count" in body:
                grouped = grouped.filter(**{f"n__{_LOOKUPS[count['op']]}": count["value"]})
            result = Q(GroupedExists(grouped.values("profile_id")))
        else:
            result = self._counted(events, count["op"], count["value"])
        return ~result if body.get("did_not") else result

    def _at_least(self, events: QuerySet[Any], n: int) -> Q:
        if n <= 0:
            return Q(pk__isnull=False)  # always: every profile did it at least zero times
        if n == 1:
            return Q(Exists(events.filter(profile_id=OuterRef("pk"))))
        grouped = (
            self._restricted(events)
            .values("profile_id")
            .annotate(n=Count("*"))
            .filter(n__gte=n)
            .values("profile_id")
        )
        return Q(GroupedExists(grouped))

    def _counted(self, events: QuerySet[Any], op: str, n: int) -> Q:
        if op == ">=":
            return self._at_least(events, n)
        if op == "<=":
            return ~self._at_least(events, n + 1)
        # exactly n: at least n and not at least n + 1
        if n == 0:
            return ~self._at_least(events, 1)
        grouped = (
            self._restricted(events)
            .values("profile_id")
            .annotate(n=Count("*"))
            .filter(n=n)
            .values("profile_id")
        )
        return Q(GroupedExists(grouped))

    def sequence(self, body: dict[str, Any], path: tuple[Any, ...]) -> Q:
        within = body["within"]
        window = timedelta(
            days=within.get("days", 0),
            hours=within.get("hours", 0),
            minutes=within.get("minutes", 0),
        )
        if window <= timedelta(0):
            raise RuleError(pointer((*path, "within")), "the window must be longer than zero")
        first = self.filtered_events(body["first"], (*path, "first"))
        if "within_last_days" in body:
            first = first.filter(timestamp__gte=self.at - timedelta(days=body["within_last_days"]))
        first = first.filter(timestamp__lte=self.at)
        deadline = ExpressionWrapper(
            OuterRef("timestamp") + Value(window), output_field=DateTimeField()
        )
        then = self.filtered_events(body["then"], (*path, "then")).filter(
            profile_id=OuterRef("profile_id"),
            timestamp__gt=OuterRef("timestamp"),
            timestamp__lte=deadline,
        )
        if body.get("not_followed"):
            # Only a `first` whose window has closed can be known not to have been followed.
            closed = first.filter(timestamp__lte=self.at - window).filter(~Exists(then))
            return Q(Exists(closed.filter(profile_id=OuterRef("pk"))))
        then = then.filter(timestamp__lte=self.at)
        return Q(Exists(first.filter(Exists(then)).filter(profile_id=OuterRef("pk"))))

    # --- references ---------------------------------------------------------------------------

    def _enter(self, kind: str, key: str, path: tuple[Any, ...]) -> None:
        if (kind, key) in self.stack:
            chain = " → ".join(k for _, k in self.stack[self.stack.index((kind, key)) :])
            raise _CycleError(
                pointer(path), f"{kind} {key!r} refers back to itself ({chain} → {key})"
            )
        self.stack.append((kind, key))

    def _inline(self, kind: str, key: str, rules: Any, path: tuple[Any, ...]) -> Q:
        """The rules of a stage or audience, compiled into this query."""
        self._enter(kind, key, path)
        try:
            check_schema(rules)
            return self.compile(rules, ())
        except _CycleError as cycle:
            # reported at the reference in the rules being compiled, outermost last
            raise _CycleError(pointer(path), cycle.message) from None
        except RuleError as inner:
            raise RuleError(
                pointer(path), f"the rules of {kind} {key!r} are not valid ({inner})"
            ) from None
        finally:
            self.stack.pop()

    def lifecycle(self, key: str, path: tuple[Any, ...]) -> Q:
        stage = LifecycleStage.objects.filter(workspace=self.workspace, key=key).first()
        if stage is None:
            raise RuleError(pointer(path), f"no lifecycle stage {key!r} in this workspace")
        return self._inline("lifecycle stage", key, stage.rules, path)

    def in_audience(self, key: str, path: tuple[Any, ...]) -> Q:
        audience = Audience.objects.filter(workspace=self.workspace, key=key).first()
        if audience is None:
            raise RuleError(pointer(path), f"no audience {key!r} in this workspace")
        return self._inline("audience", key, audience.rules, path)


def _holds(number: float, op: str, value: Any) -> bool:
    """Whether `number op value` holds (for the implicit 0 of counts and sums)."""
    if op == "in":
        return any(_holds(number, "=", v) for v in value)
    if op == "not_in":
        return not any(_holds(number, "=", v) for v in value)
    return {
        "=": number == value,
        "!=": number != value,
        "<": number < value,
        ">": number > value,
        "<=": number <= value,
        ">=": number >= value,
    }[op]


def compile_rules(
    *,
    workspace: Any,
    rules: Any,
    at: datetime | None = None,
    profile_ids: list[Any] | None = None,
    audience_key: str | None = None,
    stage_key: str | None = None,
) -> Q:
    """The rules as a filter on the workspace's profiles, checked against the schema and the
    workspace; `audience_key`/`stage_key` name the audience or stage the rules belong to, so
    that a reference back to it is refused."""
    check_schema(rules)
    compiler = Compiler(workspace=workspace, at=at or timezone.now(), profile_ids=profile_ids)
    if audience_key:
        compiler.stack.append(("audience", audience_key))
    if stage_key:
        compiler.stack.append(("lifecycle stage", stage_key))
    return compiler.compile(rules)


def base_profiles(*, workspace: Any) -> QuerySet[Any]:
    """The profiles an audience may hold: active (never merged away, never erased, which are
    gone), and not restricted (GDPR Art. 18); unordered."""
    return profile_selectors.profile_list(workspace=workspace).filter(restricted=False).order_by()


def profiles_matching(
    *,
    workspace: Any,
    rules: Any,
    at: datetime | None = None,
    profile_ids: list[Any] | None = None,
    audience_key: str | None = None,
) -> QuerySet[Any]:
    """The workspace's profiles matching `rules` at `at` (now), as one SQL query; only among
    `profile_ids` when given."""
    condition = compile_rules(
        workspace=workspace,
        rules=rules,
        at=at,
        profile_ids=profile_ids,
        audience_key=audience_key,
    )
    profiles = base_profiles(workspace=workspace)
    if profile_ids is not None:
        profiles = profiles.filter(pk__in=profile_ids)
    return profiles.filter(condition)
