"""What a keyset must be for ServiceNow to accept its tokens: one rule, checked at synth,
at the keeper's cold start and when a trust target is built."""

from __future__ import annotations

from jwtkeys.errors import ConfigurationError


def check_servicenow_keyset(
    *,
    issuer: str,
    algorithm: str,
    client_id: str,
    issuer_setting: str = "issuer",
    client_id_setting: str = "client_id",
) -> None:
    """Refuse a keyset that could never pass its own canary.

    ServiceNow checks `iss` (and `aud`) against the oauth_jwt application's client_id,
    and verifies no PS* algorithm. `*_setting` name the settings in the message.
    """
    if issuer != client_id:
        raise ConfigurationError(
            f"{issuer_setting} must equal {client_id_setting} ({issuer!r} != {client_id!r}):"
            " ServiceNow checks iss against the app's client_id"
        )
    if algorithm.startswith("PS"):
        raise ConfigurationError(
            f"ServiceNow does not verify {algorithm}: use RS* (or ES* on recent releases)"
            " for a keyset that ServiceNow trusts"
        )
