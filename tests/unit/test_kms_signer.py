"""The KMS signer's own decisions, with a stand-in KMS client (no network)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jwtkeys.errors import SigningUnavailable
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.keys.kms_signer import KeyUnusable, KmsJwsSigner, KmsKeyRef, KmsThrottled

ARN = "arn:aws:kms:us-east-1:123456789012:key/1111"
KEY = KmsKeyRef(key_arn=ARN, kid="kid-1", algorithm=ALGORITHMS["RS256"])


class StandInKms:
    """Answers Sign with a fixed response or error, and records the request."""

    def __init__(
        self, response: dict[str, Any] | None = None, error: Exception | None = None
    ) -> None:
        self.response = response or {"KeyId": ARN, "Signature": b"sig"}
        self.error = error
        self.requests: list[dict[str, Any]] = []

    def sign(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return self.response


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Sign")


def test_signs_the_digest_with_the_key_arn() -> None:
    kms = StandInKms()
    KmsJwsSigner(kms).sign(b"{}", KEY)  # type: ignore[arg-type]
    (request,) = kms.requests
    assert request["KeyId"] == ARN
    assert request["MessageType"] == "DIGEST"
    assert request["SigningAlgorithm"] == "RSASSA_PKCS1_V1_5_SHA_256"
    assert len(request["Message"]) == 32


def test_a_signature_from_another_key_is_refused() -> None:
    kms = StandInKms(response={"KeyId": ARN + "-other", "Signature": b"sig"})
    with pytest.raises(SigningUnavailable, match="not the resolved"):
        KmsJwsSigner(kms).sign(b"{}", KEY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_client_error("DisabledException"), KeyUnusable),
        (_client_error("KMSInvalidStateException"), KeyUnusable),
        (_client_error("NotFoundException"), KeyUnusable),
        (_client_error("ThrottlingException"), KmsThrottled),
        (_client_error("AccessDeniedException"), SigningUnavailable),
        (EndpointConnectionError(endpoint_url="http://kms"), SigningUnavailable),
    ],
)
def test_kms_errors_become_named_signing_errors(
    error: Exception, expected: type[Exception]
) -> None:
    with pytest.raises(expected):
        KmsJwsSigner(StandInKms(error=error)).sign(b"{}", KEY)  # type: ignore[arg-type]


def test_the_token_is_the_compact_jws_pyjwt_would_write_for_the_same_signature() -> None:
    import jwt

    # Given a KMS that answers with a fixed signature
    kms = StandInKms(response={"KeyId": ARN, "Signature": b"fixed-signature"})
    payload = b'{"sub":"svc","aud":"a"}'

    # When our signer and PyJWT's encoder (with an HMAC key, then its signature replaced)
    # encode the same payload and header
    ours = KmsJwsSigner(kms).sign(payload, KEY)  # type: ignore[arg-type]
    theirs = jwt.api_jws.PyJWS().encode(payload, "k" * 32, "HS256", headers={"kid": "kid-1"})

    # Then header and payload segments match byte for byte (alg aside), and the signing
    # input KMS received a digest of is exactly the token's first two segments
    our_header, our_payload, our_signature = ours.split(".")
    their_header, their_payload, _ = theirs.split(".")
    assert our_payload == their_payload
    assert jwt.get_unverified_header(ours) == {"alg": "RS256", "kid": "kid-1", "typ": "JWT"}
    assert jwt.utils.base64url_decode(our_header) == jwt.utils.base64url_decode(
        their_header
    ).replace(b"HS256", b"RS256")
    assert jwt.utils.base64url_decode(our_signature) == b"fixed-signature"
    (request,) = kms.requests
    assert request["Message"] == ALGORITHMS["RS256"].digest(f"{our_header}.{our_payload}".encode())
