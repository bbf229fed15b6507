"""Instance profiles: the shape of a ServiceNow release, as data the emulator loads.

A profile is a JSON file (the shipped ones are in `profiles/`; `jwtkeys live-servicenow`
writes one describing the instance it saw). It says which fields exist, how many
characters they hold, the stored spelling of the choice values jwtkeys sets, which
tables are admin-only, the application path and its clock-skew default, and which JWS
algorithms the token endpoint accepts. The emulator serves `sys_db_object`,
`sys_dictionary` and `sys_choice` from it, so the product reads the same facts it
would read from a real instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "zurich-legacy-app"

AppPath = Literal["legacy", "machine_identity"]


class ProfileError(ValueError):
    """A profile name that is not shipped, or a profile file that does not parse."""


@dataclass(frozen=True)
class InstanceProfile:
    """The facts of one instance shape (see the module docstring)."""

    name: str
    description: str = ""
    app_path: AppPath = "legacy"
    clock_skew_default: int = 300
    algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512")
    absent_fields: frozenset[str] = frozenset()  # "table.field"
    max_lengths: Mapping[str, int] = field(default_factory=dict)  # "table.field" -> n
    choices: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    admin_only_tables: frozenset[str] = frozenset()
    truncate_on_write: bool = True
    # False: sys_dictionary leaves max_length empty (the field still truncates).
    report_lengths: bool = True

    def choice_value(self, table: str, name: str, position: int = 0) -> str:
        """The stored value of the `position`-th choice of a field ('' when none)."""
        listed = self.choices.get(f"{table}.{name}", ())
        return listed[position][0] if len(listed) > position else ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> InstanceProfile:
        """Parse a profile document; ProfileError names the file and the bad entry."""
        try:
            return cls(
                name=str(values["name"]),
                description=str(values.get("description", "")),
                app_path=_app_path(values.get("app_path", "legacy")),
                clock_skew_default=int(values.get("clock_skew_default", 300)),
                algorithms=tuple(str(a) for a in values.get("algorithms", cls.algorithms)),
                absent_fields=frozenset(str(f) for f in values.get("absent_fields", ())),
                max_lengths={str(k): int(v) for k, v in values.get("max_lengths", {}).items()},
                choices={
                    str(k): tuple((str(value), str(label)) for value, label in v)
                    for k, v in values.get("choices", {}).items()
                },
                admin_only_tables=frozenset(str(t) for t in values.get("admin_only_tables", ())),
                truncate_on_write=bool(values.get("truncate_on_write", True)),
                report_lengths=bool(values.get("report_lengths", True)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProfileError(f"{where}: not a ServiceNow instance profile ({error})") from None

    def to_mapping(self) -> dict[str, Any]:
        """The profile as a JSON-ready document (what `from_mapping` reads)."""
        return {
            "name": self.name,
            "description": self.description,
            "app_path": self.app_path,
            "clock_skew_default": self.clock_skew_default,
            "algorithms": list(self.algorithms),
            "absent_fields": sorted(self.absent_fields),
            "max_lengths": dict(sorted(self.max_lengths.items())),
            "choices": {k: [list(c) for c in v] for k, v in sorted(self.choices.items())},
            "admin_only_tables": sorted(self.admin_only_tables),
            "truncate_on_write": self.truncate_on_write,
            "report_lengths": self.report_lengths,
        }


def profile_names() -> list[str]:
    """The shipped profiles, by name."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.json"))


def load_profile(name_or_file: str | None = None) -> InstanceProfile:
    """A shipped profile by name, or a profile file by path (default: DEFAULT_PROFILE)."""
    chosen = name_or_file or DEFAULT_PROFILE
    path = PROFILE_DIR / f"{chosen}.json"
    if not path.exists():
        path = Path(chosen)
        if not path.is_file():
            raise ProfileError(
                f"no ServiceNow profile {chosen!r}: give one of {', '.join(profile_names())}"
                " or a profile file"
            )
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ProfileError(f"{path}: cannot read the profile ({error})") from None
    if not isinstance(document, dict):
        raise ProfileError(f"{path}: a profile is a JSON object")
    return InstanceProfile.from_mapping(document, str(path))


def _app_path(value: object) -> AppPath:
    if value == "legacy":
        return "legacy"
    if value == "machine_identity":
        return "machine_identity"
    raise ValueError(f"app_path must be 'legacy' or 'machine_identity', not {value!r}")
