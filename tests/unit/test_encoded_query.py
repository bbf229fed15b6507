"""Encoded queries as an instance reads them: operators, ^OR binding, ordering, dropping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jwtkeys_tools.local.servicenow_emulator.encoded_query import Condition, Ordering, parse

ROWS = [
    {"name": "jwtkeys/prod/a", "kid": "a", "n": "10", "note": ""},
    {"name": "jwtkeys/prod/b", "kid": "b", "n": "9", "note": "x"},
    {"name": "other/prod/c", "kid": "c", "n": "100", "note": ""},
]


def matching(query: str, rows: list[dict[str, str]] = ROWS) -> list[str]:
    parsed = parse(query).restricted_to(lambda field: field in rows[0])
    return [r["kid"] for r in rows if parsed.matches(r.get)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kid=a", ["a"]),
        ("kid!=a", ["b", "c"]),
        ("nameLIKEprod", ["a", "b", "c"]),
        ("nameNOT LIKEjwtkeys", ["c"]),
        ("nameSTARTSWITHjwtkeys/", ["a", "b"]),
        ("nameENDSWITH/c", ["c"]),
        ("kidINa,c", ["a", "c"]),
        ("kidNOT INa,c", ["b"]),
        ("noteISEMPTY", ["a", "c"]),
        ("noteISNOTEMPTY", ["b"]),
        ("n>9", ["a", "c"]),
        ("n<=10", ["a", "b"]),
        ("KID=A", ["a", "b", "c"]),  # no lower-case field name: ignored, matches all
        ("kid=A", ["a"]),  # values compare without case, as the database collation does
    ],
)
def test_operators(query: str, expected: list[str]) -> None:
    assert matching(query) == expected


def test_caret_is_and_and_or_binds_tighter() -> None:
    # (kid=a OR kid=c) AND name STARTSWITH jwtkeys
    assert matching("kid=a^ORkid=c^nameSTARTSWITHjwtkeys") == ["a"]
    assert matching("kid=a^kid=b") == []


def test_new_query_adds_rows() -> None:
    assert matching("kid=a^NQkid=c") == ["a", "c"]


def test_condition_on_a_missing_field_is_dropped_and_matches_everything() -> None:
    # Given a field the rows lack, When it is queried, Then the condition disappears.
    assert matching("u_owner=jwtkeys") == ["a", "b", "c"]
    assert matching("u_owner=jwtkeys^kid=b") == ["b"]


def test_empty_query_matches_everything() -> None:
    assert matching("") == ["a", "b", "c"]


def test_ordering_numbers_as_numbers_and_several_keys() -> None:
    parsed = parse("ORDERBYDESCn")
    assert parsed.orderings == (Ordering("n", descending=True),)
    ordered = parsed.sort(ROWS, lambda row: row.get)
    assert [r["kid"] for r in ordered] == ["c", "a", "b"]
    rows = [{"g": "1", "k": "b"}, {"g": "0", "k": "z"}, {"g": "1", "k": "a"}]
    by_two = parse("ORDERBYg^ORDERBYk").sort(rows, lambda row: row.get)
    assert [r["k"] for r in by_two] == ["z", "a", "b"]


def test_escaped_caret_and_eq_terminator() -> None:
    parsed = parse("name=a^^b^EQ")
    assert parsed.disjuncts == (((Condition("name", "=", "a^b"),),),)


def test_unreadable_terms_are_ignored_not_errors() -> None:
    parsed = parse("garbage^kid=a")
    assert parsed.ignored_terms == ("garbage",)
    assert matching("garbage^kid=a") == ["a"]


def test_dot_walked_fields_parse() -> None:
    assert parse("oauth_jwt.name=app").fields() == {"oauth_jwt.name"}


_values = st.sampled_from(["a", "b", "ab", "", "10", "9"])
_rows = st.lists(st.fixed_dictionaries({"kid": _values, "note": _values}), max_size=6)


@given(rows=_rows, first=_values, second=_values)
def test_or_is_union_and_caret_is_intersection(
    rows: list[dict[str, str]], first: str, second: str
) -> None:
    def ids(query: str) -> set[int]:
        parsed = parse(query)
        return {i for i, row in enumerate(rows) if parsed.matches(row.get)}

    left, right = f"kid={first}", f"noteLIKE{second}"
    assert ids(f"{left}^OR{right}") == ids(left) | ids(right)
    assert ids(f"{left}^{right}") == ids(left) & ids(right)
    assert ids(f"{left}^NQ{right}") == ids(left) | ids(right)
    assert ids(f"kid!={first}") == set(range(len(rows))) - ids(left)
