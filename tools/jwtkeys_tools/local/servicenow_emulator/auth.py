"""Who is calling, and may they: Basic and Bearer authentication, and role-based table ACLs.

Passwords live outside the tables (an instance keeps them one-way hashed and never
returns them). Access tokens are the `oauth_credential` rows the token endpoint wrote:
a token is alive while its row exists and its `expires` is ahead of the emulator clock.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from jwtkeys.clock import Clock
from jwtkeys_tools.local.servicenow_emulator.tables import ADMIN, RecordStore, Row, Table


@dataclass(frozen=True)
class Principal:
    """An authenticated user and the roles that its ACL checks use."""

    user_sys_id: str
    user_name: str
    roles: frozenset[str]

    @classmethod
    def of(cls, user: Row) -> Principal:
        """The principal a `sys_user` row stands for."""
        roles = frozenset(r.strip() for r in user.get("roles", "").split(",") if r.strip())
        return cls(user["sys_id"], user["user_name"], roles)

    @property
    def is_admin(self) -> bool:
        """Whether the user holds `admin`, which passes every ACL."""
        return ADMIN in self.roles

    def may_read(self, table: Table) -> bool:
        """Table-level read ACL: open when the table names no read roles."""
        return self.is_admin or not table.read_roles or bool(self.roles & table.read_roles)

    def may_write(self, table: Table) -> bool:
        """Table-level create/write/delete ACL."""
        return self.is_admin or bool(self.roles & table.write_roles)


def parse_glide_datetime(text: str) -> float:
    """Seconds since the epoch of a `YYYY-MM-DD HH:MM:SS` UTC value."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


class Credentials:
    """Password hashes and the index from access-token digest to its `oauth_credential` row."""

    def __init__(self, store: RecordStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._passwords: dict[str, tuple[bytes, bytes]] = {}  # user sys_id -> (salt, hash)
        self._tokens: dict[str, str] = {}  # sha256(token) -> oauth_credential sys_id

    def set_password(self, user_sys_id: str, password: str) -> None:
        """Give a user a password for Basic auth (and the password grant)."""
        salt = secrets.token_bytes(16)
        with self._lock:
            self._passwords[user_sys_id] = (salt, _hash(salt, password))

    def check_password(self, user_name: str, password: str) -> Row | None:
        """The active, unlocked user with this name and password, or None."""
        user = self._user_by_name(user_name)
        if user is None or user["active"] != "true" or user["locked_out"] == "true":
            return None
        with self._lock:
            stored = self._passwords.get(user["sys_id"])
        if stored is None or not hmac.compare_digest(stored[1], _hash(stored[0], password)):
            return None
        return user

    def remember_token(self, token: str, credential_sys_id: str) -> None:
        """Index an issued access token (only its digest is kept)."""
        with self._lock:
            self._tokens[_digest(token)] = credential_sys_id

    def user_for_token(self, token: str) -> Row | None:
        """The active user an access token was issued to, while its row lives and is unexpired."""
        with self._lock:
            credential_id = self._tokens.get(_digest(token))
        if credential_id is None:
            return None
        credential = self._store.get("oauth_credential", credential_id)
        if credential is None or credential.get("type") != "access_token":
            return None
        if not credential["expires"] or parse_glide_datetime(credential["expires"]) <= (
            self._clock.now()
        ):
            return None
        user = self._store.get("sys_user", credential["user"])
        if user is None or user["active"] != "true":
            return None
        return user

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Password hashes and token digests, for persisting the emulator's state."""
        with self._lock:
            return {
                "passwords": {k: f"{s.hex()}:{h.hex()}" for k, (s, h) in self._passwords.items()},
                "tokens": dict(self._tokens),
            }

    def restore(self, state: Mapping[str, Mapping[str, str]]) -> None:
        """Replace passwords and tokens with those of `snapshot`."""
        with self._lock:
            self._passwords = {
                k: (bytes.fromhex(v.split(":")[0]), bytes.fromhex(v.split(":")[1]))
                for k, v in state["passwords"].items()
            }
            self._tokens = dict(state["tokens"])

    def clear(self) -> None:
        """Forget every password and token."""
        with self._lock:
            self._passwords.clear()
            self._tokens.clear()

    def _user_by_name(self, user_name: str) -> Row | None:
        for user in self._store.rows("sys_user"):
            if user["user_name"] == user_name:
                return user
        return None


def authenticate(authorization: str | None, credentials: Credentials) -> Principal | None:
    """The principal behind an `Authorization` header (Basic or Bearer), or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        user = credentials.user_for_token(value)
        return Principal.of(user) if user else None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user_name, sep, password = decoded.partition(":")
        if not sep:
            return None
        found = credentials.check_password(user_name, password)
        return Principal.of(found) if found else None
    return None


def _hash(salt: bytes, password: str) -> bytes:
    # A fast hash is enough for a development emulator: nothing here protects real users.
    return hashlib.sha256(salt + password.encode("utf-8")).digest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
