"""What the instance's own dictionary says about the tables and fields jwtkeys uses.

No ServiceNow source states every field jwtkeys relies on, their maximum lengths, or
the stored spelling of a choice value, and releases differ. An instance answers a
write to a field it lacks by ignoring that field, a query on it by dropping the
condition, and a value longer than the field by truncating it silently. So the keeper
reads, once per container (and again after a failed write):

- `sys_db_object`: each table and its parents (`oauth_jwt` extends `oauth_entity`;
  a field lives in the dictionary of the table that defines it);
- `sys_dictionary`: each field's existence, `max_length` and reference target;
- `sys_choice`: the stored values of the choice fields jwtkeys sets.

Then it writes only fields the dictionary shows, asks only for those, refuses before
writing anything when a field it needs is missing or too short (naming the table, the
field, its length and the length needed), and writes a choice in the instance's own
spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from jwtkeys.errors import ServiceNowError

TABLES_TABLE = "sys_db_object"
DICTIONARY_TABLE = "sys_dictionary"
CHOICE_TABLE = "sys_choice"
# A table hierarchy deeper than this is not one an instance has: stop rather than loop.
MAX_TABLE_DEPTH = 8

Record = dict[str, str]


class TableReader(Protocol):
    """The reads `read_schema` needs (TableClient has them)."""

    def list(self, table: str, query: str, fields: Sequence[str] | None = None) -> list[Record]:
        """Every matching record."""
        ...

    def get(self, table: str, sys_id: str, fields: Sequence[str] | None = None) -> Record | None:
        """One record, or None."""
        ...


class SchemaMismatch(ServiceNowError):
    """The instance lacks a field jwtkeys needs, or holds fewer characters than it writes."""

    code = "SchemaMismatch"


@dataclass(frozen=True)
class FieldFacts:
    """One field as the dictionary describes it."""

    defined_on: str
    max_length: int  # 0: the dictionary gives none
    reference: str  # the referenced table, "" when the field is not a reference
    internal_type: str


@dataclass(frozen=True)
class Choice:
    """One stored choice value and its label."""

    value: str
    label: str


@dataclass(frozen=True)
class Need:
    """A field jwtkeys writes: how many characters it needs, and what it points at."""

    table: str
    name: str
    length: int = 0
    reference: str = ""
    why: str = ""


@dataclass(frozen=True)
class InstanceSchema:
    """The dictionary facts of the tables jwtkeys uses (inherited fields included)."""

    fields: Mapping[str, Mapping[str, FieldFacts]]
    choices: Mapping[tuple[str, str], tuple[Choice, ...]] = field(default_factory=dict)

    def has(self, table: str, name: str) -> bool:
        """Whether the instance's `table` has the field `name`."""
        return name in self.fields.get(table, {})

    def facts(self, table: str, name: str) -> FieldFacts | None:
        """The field's dictionary facts, or None when the table lacks it."""
        return self.fields.get(table, {}).get(name)

    def present(self, table: str, names: Iterable[str]) -> tuple[str, ...]:
        """The subset of `names` the table has (always keeping sys_id), in order."""
        return tuple(n for n in names if n == "sys_id" or self.has(table, n))

    def writable(self, table: str, values: Mapping[str, str]) -> dict[str, str]:
        """`values` without the fields the table lacks (an instance would drop them)."""
        return {n: v for n, v in values.items() if self.has(table, n)}

    def choice_value(self, table: str, name: str, meanings: Sequence[str]) -> str:
        """The instance's spelling of a choice, matched on value or label.

        `meanings` are accepted spellings, compared without case, spaces or
        punctuation; the first is written when the field has no choice list.
        """
        listed = self.choices.get((table, name), ())
        if not listed:
            return meanings[0]
        wanted = {_canonical(m) for m in meanings}
        for choice in listed:
            if _canonical(choice.value) in wanted or _canonical(choice.label) in wanted:
                return choice.value
        offered = ", ".join(repr(c.value) for c in listed)
        raise SchemaMismatch(
            f"{table}.{name} offers no choice meaning {meanings[0]!r} (it offers {offered})"
        )

    def check(self, needs: Iterable[Need]) -> None:
        """Raise SchemaMismatch naming every field that is missing, short or misdirected."""
        problems: list[str] = []
        for need in needs:
            facts = self.facts(need.table, need.name)
            if facts is None:
                problems.append(f"{need.table}.{need.name} does not exist on this instance")
                continue
            if need.length and facts.max_length and facts.max_length < need.length:
                problems.append(
                    f"{need.table}.{need.name} holds {facts.max_length} characters, jwtkeys"
                    f" writes up to {need.length}{f' ({need.why})' if need.why else ''}"
                )
            if need.reference and facts.reference and facts.reference != need.reference:
                problems.append(
                    f"{need.table}.{need.name} references {facts.reference}, not {need.reference}"
                )
        if problems:
            raise SchemaMismatch(
                "the instance's dictionary does not fit jwtkeys (nothing was written): "
                + "; ".join(problems)
                + ". Widen the fields (System Definition > Dictionary), or shorten the"
                " keyset name; an empty dictionary answer can also mean the integration"
                f" user cannot read {DICTIONARY_TABLE}"
            )


def read_schema(
    client: TableReader,
    wanted: Mapping[str, Sequence[str]],
    choice_fields: Iterable[tuple[str, str]] = (),
) -> InstanceSchema:
    """Read the dictionary facts of `wanted` (table -> fields) and the listed choices."""
    fields: dict[str, dict[str, FieldFacts]] = {}
    for table, names in wanted.items():
        chain = _table_chain(client, table)
        fields[table] = _fields_of(client, chain, names) if chain else {}
    choices = {
        (table, name): _choices_of(client, table, name)
        for table, name in choice_fields
        if name in fields.get(table, {})
    }
    return InstanceSchema(fields, choices)


def _table_chain(client: TableReader, table: str) -> list[str]:
    """`table` and its ancestors, most specific first; [] when the table does not exist."""
    rows = client.list(TABLES_TABLE, f"name={table}", ("sys_id", "name", "super_class"))
    # Re-checked: a dropped condition would return every table.
    row = next((r for r in rows if r.get("name") == table), None)
    chain: list[str] = []
    while row is not None and len(chain) < MAX_TABLE_DEPTH:
        chain.append(row["name"])
        parent = row.get("super_class", "")
        row = (
            client.get(TABLES_TABLE, parent, ("sys_id", "name", "super_class")) if parent else None
        )
        if row is not None and (not row.get("name") or row["name"] in chain):
            row = None
    return chain


def _fields_of(
    client: TableReader, chain: Sequence[str], names: Sequence[str]
) -> dict[str, FieldFacts]:
    query = f"nameIN{','.join(chain)}^elementIN{','.join(names)}"
    rows = client.list(
        DICTIONARY_TABLE,
        query,
        ("sys_id", "name", "element", "max_length", "reference", "internal_type"),
    )
    found: dict[str, FieldFacts] = {}
    # The most specific table wins: walk the chain from the root down.
    for table in reversed(chain):
        for row in rows:
            if row.get("name") != table or row.get("element") not in names:
                continue
            length = row.get("max_length", "").strip()
            found[row["element"]] = FieldFacts(
                defined_on=table,
                max_length=int(length) if length.isdigit() else 0,
                reference=row.get("reference", ""),
                internal_type=row.get("internal_type", ""),
            )
    return found


def _choices_of(client: TableReader, table: str, name: str) -> tuple[Choice, ...]:
    rows = client.list(
        CHOICE_TABLE,
        f"name={table}^element={name}^ORDERBYsequence",
        ("sys_id", "name", "element", "value", "label", "inactive"),
    )
    return tuple(
        Choice(row.get("value", ""), row.get("label", ""))
        for row in rows
        if row.get("name") == table
        and row.get("element") == name
        and row.get("inactive", "false") != "true"
    )


def _canonical(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())
