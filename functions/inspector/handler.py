"""The tampering inspector: KMS CloudTrail events, outside the keeper's concurrency."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from jwtkeys.keeper.inspector import TamperingInspector
from jwtkeys.metrics_catalog import INSPECTOR_SERVICE
from jwtkeys.observability import MetricsRecorder, lambda_log_level
from jwtkeys.settings import KeeperSettings

logger = Logger(service=INSPECTOR_SERVICE)
# The keeper's settings (keyset, bucket, both roles) without ServiceNow: it reads only
# the registry.
settings = KeeperSettings.from_environ(os.environ)
inspector = TamperingInspector.create(
    settings,
    boto3.client("s3"),
    metrics=MetricsRecorder(INSPECTOR_SERVICE, settings.keyset, level=lambda_log_level(os.environ)),
    logger=logger,
)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return inspector.handle(event)
