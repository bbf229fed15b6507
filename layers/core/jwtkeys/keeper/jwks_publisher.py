"""Publishing the JWKS (and a minimal OpenID configuration) to S3, behind a CDN."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import requests
from botocore.exceptions import ClientError

from jwtkeys.clock import Clock
from jwtkeys.errors import JwksUnavailable, aws_error_code
from jwtkeys.keys.jwk import render_jwks
from jwtkeys.names import JWKS_OBJECT_KEY, OPENID_CONFIGURATION_KEY, PUBLIC_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_cloudfront import CloudFrontClient
    from mypy_boto3_s3 import S3Client

SERVED_FETCH_TIMEOUT = (3.05, 5.0)


class CdnInvalidator(Protocol):
    """Drops the CDN's cached copies of the public documents after a change."""

    def invalidate(self, paths: list[str]) -> None: ...


class CloudFrontInvalidator:
    """Invalidates paths on a CloudFront distribution."""

    def __init__(self, cloudfront: CloudFrontClient, distribution_id: str, clock: Clock) -> None:
        self._cloudfront = cloudfront
        self._distribution_id = distribution_id
        self._clock = clock

    def invalidate(self, paths: list[str]) -> None:
        self._cloudfront.create_invalidation(
            DistributionId=self._distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": paths},
                "CallerReference": f"jwtkeys-{self._clock.now():.6f}",
            },
        )


class RecordingInvalidator:
    """No CDN (local runs): records what would have been invalidated."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def invalidate(self, paths: list[str]) -> None:
        self.calls.append(list(paths))


class JwksPublisher:
    """Writes `.well-known/jwks.json` only when its bytes change, then invalidates the CDN."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        issuer: str,
        jwks_max_age: int,
        invalidator: CdnInvalidator,
        public_base_url: str | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._issuer = issuer
        self._cache_control = f"public, max-age={jwks_max_age}"
        self._invalidator = invalidator
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._http = requests.Session()

    @property
    def jwks_url(self) -> str | None:
        return f"{self.public_base_url}/{JWKS_OBJECT_KEY}" if self.public_base_url else None

    def read_origin(self) -> bytes | None:
        """The JWKS object's bytes at the origin (S3), or None when absent."""
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=JWKS_OBJECT_KEY)
        except ClientError as error:
            if aws_error_code(error) in {"NoSuchKey", "404"}:
                return None
            raise
        return response["Body"].read()

    def publish(self, keys: Iterable[Mapping[str, Any]], origin: bytes | None) -> bytes | None:
        """Write the JWKS when it differs from `origin`; return the new bytes, or None."""
        document = render_jwks(keys)
        if document == origin:
            return None
        self._put(JWKS_OBJECT_KEY, document)
        if self._serves_openid_configuration():
            self._put(OPENID_CONFIGURATION_KEY, self._openid_configuration())
        self._invalidator.invalidate([f"/{PUBLIC_PREFIX}*"])
        return document

    def read_served(self) -> bytes | None:
        """The JWKS as verifiers see it (over HTTP) when a public URL is configured."""
        if self.jwks_url is None:
            return None
        try:
            response = self._http.get(self.jwks_url, timeout=SERVED_FETCH_TIMEOUT)
        except requests.RequestException as error:
            raise JwksUnavailable(
                f"cannot fetch the served JWKS {self.jwks_url}: {error}"
            ) from None
        if response.status_code != 200:
            return None
        return response.content

    def _put(self, key: str, body: bytes) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            CacheControl=self._cache_control,
        )

    def _serves_openid_configuration(self) -> bool:
        # Only when the issuer is an https URL on the host that serves the JWKS: a
        # discovery document elsewhere would claim an issuer it cannot speak for.
        if self.public_base_url is None:
            return False
        issuer, base = urlparse(self._issuer), urlparse(self.public_base_url)
        return issuer.scheme == "https" and issuer.netloc == base.netloc

    def _openid_configuration(self) -> bytes:
        document = {"issuer": self._issuer, "jwks_uri": self.jwks_url}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
