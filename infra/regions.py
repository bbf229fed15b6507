"""Regions known to lack a service every jwtkeys stack needs: refused at synth, with why.

Every stack gives the signer a Lambda Function URL and serves the JWKS through
CloudFront. CloudFormation would otherwise fail half-way through the first deploy,
after the bucket and roles exist. The table lists only what AWS's documentation says
(checked 2026-12); a Region missing from it is assumed to have both services, and a
stage without a `region` (environment-agnostic) is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from jwtkeys.errors import ConfigurationError

FUNCTION_URLS: Final = "Lambda Function URLs"
CLOUDFRONT: Final = "Amazon CloudFront"

# Service -> (Regions that lack it, where AWS says so).
REGIONS_WITHOUT: Final[Mapping[str, tuple[frozenset[str], str]]] = {
    FUNCTION_URLS: (
        frozenset(
            {
                "ap-east-2",
                "ap-south-2",
                "ap-southeast-4",
                "ap-southeast-5",
                "ap-southeast-6",
                "ap-southeast-7",
                "ca-west-1",
                "eu-central-2",
                "eu-south-2",
                "il-central-1",
                "me-central-1",
            }
        ),
        "https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html",
    ),
    CLOUDFRONT: (
        # CloudFront sits outside the GovCloud partition: no distribution can be created there.
        frozenset({"us-gov-east-1", "us-gov-west-1"}),
        "https://docs.aws.amazon.com/govcloud-us/latest/UserGuide/setting-up-credentials.html",
    ),
}

STACK_NEEDS: Final = (FUNCTION_URLS, CLOUDFRONT)


def check_region(region: str, where: str, needs: tuple[str, ...] = STACK_NEEDS) -> None:
    """Refuse `region` when it lacks one of `needs`, naming the service and the source."""
    missing = [service for service in needs if region in REGIONS_WITHOUT[service][0]]
    if missing:
        sources = "; ".join(f"{service}: {REGIONS_WITHOUT[service][1]}" for service in missing)
        raise ConfigurationError(
            f"{where}.region {region!r} lacks {' and '.join(missing)}, which every jwtkeys"
            f" stack needs (the signer's Function URL, the JWKS behind CloudFront); pick"
            f" another Region ({sources})"
        )
