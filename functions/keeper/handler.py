"""The keeper function: the scheduled tick and operator actions."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from jwtkeys import servicenow
from jwtkeys.clock import SystemClock
from jwtkeys.keeper.service import CREATE_KEY_CONFIG, KeeperClients, KeeperService
from jwtkeys.metrics_catalog import KEEPER_SERVICE
from jwtkeys.observability import MetricsRecorder, lambda_log_level
from jwtkeys.settings import KeeperSettings

# Lambda's active tracing records the invocation; the X-Ray SDK (not in the dependency
# layer) would only add subsegments, at a cold-start cost.
logger = Logger(service=KEEPER_SERVICE)
settings = KeeperSettings.from_environ(os.environ)
service = KeeperService.create(
    settings,
    KeeperClients(
        kms=boto3.client("kms"),
        s3=boto3.client("s3"),
        sts=boto3.client("sts"),
        kms_create=boto3.client("kms", config=CREATE_KEY_CONFIG),
        tagging=boto3.client("resourcegroupstaggingapi"),
        cloudfront=boto3.client("cloudfront") if settings.distribution_id else None,
    ),
    SystemClock(),
    trust_factory=servicenow.trust_target,
    logger=logger,
    # Stamped with the function's log level, so raising it never filters out the metrics.
    metrics=MetricsRecorder(KEEPER_SERVICE, settings.keyset, level=lambda_log_level(os.environ)),
)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.handle(event)
