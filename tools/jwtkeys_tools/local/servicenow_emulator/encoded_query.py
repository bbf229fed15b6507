"""ServiceNow encoded queries (`sysparm_query`): parse once, then match rows and order them.

Grammar, as instances read it: terms joined by `^` (AND); a term starting with `OR`
(`^OR`) joins the previous term in one OR group, which binds tighter than AND; `^NQ`
starts a new query whose rows are added (OR of whole queries). `ORDERBY<field>` and
`ORDERBYDESC<field>` are ordering terms, and `EQ` (a terminator some clients append)
is ignored. A literal `^` inside a value is written `^^`.

Conditions on a field the table lacks are not errors on a real instance: they are
dropped, so the query matches more rows. Dropping is the table's business (it knows
the schema); `Query.restricted_to` does it here.

String comparisons ignore case, as they do on an instance's database (its default
collation): `name=Foo` also finds `foo`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Longest operators first: `NOT LIKE` before `LIKE`, `!=` before `=`, `ISNOTEMPTY` before
# `ISEMPTY`. Field names on an instance are lower case, which keeps an upper-case
# operator from being read as part of the field name (`nameLIKEx`).
_OPERATORS = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT LIKE",
    "NOTLIKE",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "NOT IN",
    "NOTIN",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
)
_TERM = re.compile(
    r"^(?P<field>[a-z0-9_][a-z0-9_.]*)(?P<op>"
    + "|".join(re.escape(op) for op in _OPERATORS)
    + r")(?P<value>.*)$",
    re.DOTALL,
)
_ESCAPED_CARET = "\x00"
_T = TypeVar("_T")

# Reads one field of a row: its stored string, or None when the table lacks that field.
FieldReader = Callable[[str], str | None]


@dataclass(frozen=True)
class Condition:
    """One `field OP value` test."""

    field: str
    operator: str
    value: str

    def matches(self, actual: str) -> bool:
        """Whether a stored value satisfies this condition."""
        left = actual.casefold()
        right = self.value.casefold()
        op = self.operator
        if op == "=":
            return left == right
        if op == "!=":
            return left != right
        if op == "LIKE":
            return right in left
        if op in ("NOT LIKE", "NOTLIKE"):
            return right not in left
        if op == "STARTSWITH":
            return left.startswith(right)
        if op == "ENDSWITH":
            return left.endswith(right)
        if op == "IN":
            return left in _split_list(right)
        if op in ("NOT IN", "NOTIN"):
            return left not in _split_list(right)
        if op == "ISEMPTY":
            return left == ""
        if op == "ISNOTEMPTY":
            return left != ""
        return _compare(op, actual, self.value)


def _split_list(value: str) -> set[str]:
    return {item.strip() for item in value.split(",")}


_ORDER_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _compare(op: str, actual: str, expected: str) -> bool:
    # Numbers compare as numbers; everything else (dates are `YYYY-MM-DD HH:MM:SS`,
    # which sorts correctly as text) compares as text.
    left, right = _sort_key(actual), _sort_key(expected)
    if left[0] != right[0]:
        return False  # a number and a text never compare
    return _ORDER_COMPARISONS[op](left, right)


@dataclass(frozen=True)
class Ordering:
    """One `ORDERBY` / `ORDERBYDESC` term."""

    field: str
    descending: bool


@dataclass(frozen=True)
class Query:
    """A parsed encoded query: OR of AND-groups of OR-groups of conditions, plus ordering."""

    # disjuncts (split by ^NQ) -> conjuncts (split by ^) -> alternatives (split by ^OR)
    disjuncts: tuple[tuple[tuple[Condition, ...], ...], ...] = ()
    orderings: tuple[Ordering, ...] = ()
    # Terms that parse as nothing known; an instance ignores them, and so do we.
    ignored_terms: tuple[str, ...] = field(default=())

    def fields(self) -> set[str]:
        """Every field a condition or an ordering names."""
        names = {o.field for o in self.orderings}
        for conjuncts in self.disjuncts:
            for alternatives in conjuncts:
                names.update(c.field for c in alternatives)
        return names

    def restricted_to(self, known: Callable[[str], bool]) -> Query:
        """The query an instance actually runs: conditions on unknown fields dropped."""
        disjuncts = []
        for conjuncts in self.disjuncts:
            kept = []
            for alternatives in conjuncts:
                alive = tuple(c for c in alternatives if known(c.field))
                if alive:
                    kept.append(alive)
            disjuncts.append(tuple(kept))
        orderings = tuple(o for o in self.orderings if known(o.field))
        return Query(tuple(disjuncts), orderings, self.ignored_terms)

    def matches(self, read: FieldReader) -> bool:
        """Whether a row (seen through `read`) satisfies the query; no conditions -> True."""
        if not self.disjuncts:
            return True
        return any(_all_groups(conjuncts, read) for conjuncts in self.disjuncts)

    def sort(self, rows: Sequence[_T], reader: Callable[[_T], FieldReader]) -> list[_T]:
        """Rows in the query's order; stable, so ties keep the store's order."""
        ordered = list(rows)
        # Sort by the last key first: Python's sort is stable, so earlier keys win.
        for ordering in reversed(self.orderings):
            ordered.sort(key=_key_of(ordering.field, reader), reverse=ordering.descending)
        return ordered


def _all_groups(conjuncts: Iterable[tuple[Condition, ...]], read: FieldReader) -> bool:
    for alternatives in conjuncts:
        if not any(c.matches(read(c.field) or "") for c in alternatives):
            return False
    return True


def _key_of(
    name: str, reader: Callable[[_T], FieldReader]
) -> Callable[[_T], tuple[int, float, str]]:
    return lambda row: _sort_key(reader(row)(name) or "")


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value.casefold())


def parse(encoded: str) -> Query:
    """Parse a `sysparm_query` string; never raises (an instance ignores what it cannot read)."""
    text = encoded.replace("^^", _ESCAPED_CARET)
    disjuncts: list[tuple[tuple[Condition, ...], ...]] = []
    orderings: list[Ordering] = []
    ignored: list[str] = []
    for part in text.split("^NQ"):
        conjuncts: list[list[Condition]] = []
        for raw in part.split("^"):
            term = raw.replace(_ESCAPED_CARET, "^")
            if term in ("", "EQ"):
                continue
            if term.startswith("ORDERBYDESC"):
                orderings.append(Ordering(term[len("ORDERBYDESC") :], descending=True))
                continue
            if term.startswith("ORDERBY"):
                orderings.append(Ordering(term[len("ORDERBY") :], descending=False))
                continue
            is_or = term.startswith("OR")
            condition = _parse_condition(term[2:] if is_or else term)
            if condition is None:
                ignored.append(term)
                continue
            if is_or and conjuncts:
                conjuncts[-1].append(condition)
            else:
                conjuncts.append([condition])
        if conjuncts:
            disjuncts.append(tuple(tuple(group) for group in conjuncts))
    return Query(tuple(disjuncts), tuple(orderings), tuple(ignored))


def _parse_condition(term: str) -> Condition | None:
    found = _TERM.match(term)
    if found is None:
        return None
    return Condition(found["field"], found["op"], found["value"])
