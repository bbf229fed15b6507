"""The signing function: services invoke it (directly or via its Function URL) for a token."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from aws_lambda_powertools import Logger
from botocore.config import Config

from jwtkeys.clock import SystemClock
from jwtkeys.metrics_catalog import SIGNER_SERVICE
from jwtkeys.signer.service import SignService

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

logger = Logger(service=SIGNER_SERVICE)
# botocore's own session, not boto3's: boto3 imports s3transfer (and multiprocessing) at
# every cold start, and a token needs neither. Adaptive retries absorb brief KMS
# throttling before we report SigningUnavailable.
_kms = cast(
    "KMSClient",
    botocore.session.get_session().create_client(
        "kms", config=Config(retries={"mode": "adaptive", "max_attempts": 4})
    ),
)
service = SignService.create(os.environ, _kms, SystemClock(), logger=logger)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.handle(event)
