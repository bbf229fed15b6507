"""The API Gateway authorizer: HTTP API (payload 2.0) and REST (TOKEN) requests, one JWKS."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from jwtkeys.clock import SystemClock
from jwtkeys.metrics_catalog import AUTHORIZER_SERVICE
from jwtkeys.verify.authorizer import Authorizer

logger = Logger(service=AUTHORIZER_SERVICE)
# Built once per container: the JWKS it fetches is kept across invocations.
authorizer = Authorizer.create(os.environ, SystemClock(), logger=logger)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return authorizer.handle(event)
