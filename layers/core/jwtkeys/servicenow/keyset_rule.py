"""What a keyset must be for ServiceNow to accept its tokens: one rule, checked at synth,
at the keeper's cold start and when a trust target is built."""

from __future__ import annotations

from jwtkeys.errors import ConfigurationError

# RSA 2048 (the documented maximum) and the EC curves ES256/384/512 use.
SERVICENOW_KEY_SPECS = ("RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")


def check_servicenow_keyset(
    *,
    issuer: str,
    algorithm: str,
    client_id: str,
    key_spec: str | None = None,
    issuer_setting: str = "issuer",
    client_id_setting: str = "client_id",
) -> None:
    """Refuse a keyset that could never pass its own canary.

    ServiceNow checks `iss` (and `aud`) against the oauth_jwt application's client_id,
    and verifies no PS* algorithm. Its certificate documentation says "a key size up
    to 2048 bits": until a live run proves larger RSA keys work, a ServiceNow keyset
    uses RSA_2048 or an EC key (`key_spec`, checked when given). `*_setting` name the
    settings in the message.
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
    if key_spec is not None and key_spec not in SERVICENOW_KEY_SPECS:
        raise ConfigurationError(
            f"ServiceNow documents certificates with keys up to 2048 bits: key_spec {key_spec}"
            f" is refused for a keyset that ServiceNow trusts (use one of"
            f" {', '.join(SERVICENOW_KEY_SPECS)})"
        )
