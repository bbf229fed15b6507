"""Names, runtime choices and alarm thresholds of the infrastructure: one place for each.

Anything the functions also read (tag keys, alias prefixes, S3 prefixes, environment
variable names, metric names) comes from the runtime package itself (`jwtkeys.names`,
`jwtkeys.metrics_catalog`), so the two sides cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from jwtkeys import names
from jwtkeys.names import KMS_EVENTS_MADE_BY_KEEPER, KMS_EVENTS_NEVER_MADE_BY_KEEPER

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
CORE_PACKAGE_DIR: Final = PROJECT_ROOT / "layers" / "core" / "jwtkeys"
DEPS_REQUIREMENTS: Final = PROJECT_ROOT / "layers" / "deps" / "requirements.txt"
# Transitive pins (botocore, cffi, ...) for a reproducible dependency layer.
CONSTRAINTS_FILE: Final = PROJECT_ROOT / "constraints.txt"
FUNCTIONS_DIR: Final = PROJECT_ROOT / "functions"
# Dependency-layer builds are cached here, one folder per requirements hash.
BUILD_CACHE_DIR: Final = PROJECT_ROOT / "build" / "layers"

CONTEXT_KEY: Final = "jwtkeys"
# `cdk ... -c jwtkeys:stage=dev -c jwtkeys:suffix=abc123`: synthesize one stage only, its
# keyset (and so its stack and every derived name) suffixed: a throw-away copy.
STAGE_CONTEXT_KEY: Final = "jwtkeys:stage"
SUFFIX_CONTEXT_KEY: Final = "jwtkeys:suffix"
STACK_NAME_PREFIX: Final = "jwtkeys-"
# Tag on every resource of a keyset stack (cost allocation, ownership).
STACK_TAG: Final = "jwtkeys-keyset"

# The core layer is built by inclusion: the jwtkeys base modules (the package's top-level
# files) plus exactly these subpackages, the ones the functions import. An infra test
# checks this list against the functions' import closure, so it cannot drift.
CORE_LAYER_SUBPACKAGES: Final = ("keeper", "keys", "servicenow", "signer", "trust", "verify")

# Lambda defaults, stated once for every function.
# Python 3.13, not the newest runtime CDK offers (3.14): the layers ship bytecode, which
# only an interpreter of the runtime's exact minor version can write, and 3.13 is the
# newest this project's machines have (infra/layers.py finds it). Without bytecode a
# read-only /opt makes every cold start compile its imports: about twice the import
# time (docs/performance.md). Both runtimes are supported by Lambda until 2029.
LAMBDA_RUNTIME: Final = lambda_.Runtime.PYTHON_3_13
LAMBDA_ARCHITECTURE: Final = lambda_.Architecture.ARM_64
# pip's platform tags for the runtime: cryptography's cffi wheels carry only the
# manylinux2014 tag, its own wheels the newer manylinux_2_28 tag.
LAYER_PIP_PLATFORMS: Final = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
LOG_RETENTION: Final = logs.RetentionDays.THREE_MONTHS
HANDLER: Final = "handler.lambda_handler"

# From `make bench`: the sign handler peaks at about 67 MB and spends nearly all its time
# waiting on one KMS call (~0.2 ms of its own per token). Memory is bought for CPU: 512 MB
# gives the ~0.5 s cold import (PyJWT + cryptography + boto3) a usable share of a vCPU
# without paying for idle memory. KMS's adaptive retries (4 attempts) fit well inside 10 s.
SIGNER_MEMORY_MB: Final = 512
SIGNER_TIMEOUT_SECONDS: Final = 10
# The keeper creates keys, builds certificates and talks to ServiceNow: a tick may take
# a while, but must end well before the next one (the lease would otherwise expire).
KEEPER_MEMORY_MB: Final = 512
KEEPER_TIMEOUT_SECONDS: Final = 120
KEEPER_ASYNC_RETRY_ATTEMPTS: Final = 2

# The authorizer verifies a signature per uncached request (no AWS call once the JWKS
# is cached): a small function; the timeout covers one JWKS fetch (5 s) and the check.
AUTHORIZER_MEMORY_MB: Final = 256
AUTHORIZER_TIMEOUT_SECONDS: Final = 10

# The inspector reads one S3 object per CloudTrail event: a small, short function.
INSPECTOR_MEMORY_MB: Final = 256
INSPECTOR_TIMEOUT_SECONDS: Final = 30

SIGNER_SERVICE_NAME: Final = "jwtkeys-signer"
INSPECTOR_SERVICE_NAME: Final = "jwtkeys-inspector"
AUTHORIZER_SERVICE_NAME: Final = "jwtkeys-authorizer"
KEEPER_SERVICE_NAME: Final = "jwtkeys-keeper"
TICK_EVENT: Final = {"action": "tick"}

# Old JWKS versions are kept for forensics ("what did we publish then?"), not forever.
NONCURRENT_VERSION_EXPIRATION_DAYS: Final = 90
# The failed-tick queue holds messages for investigation; SQS allows at most 14 days.
FAILURE_QUEUE_RETENTION_DAYS: Final = 14
PUBLIC_PATH_PATTERN: Final = "/.well-known/*"

# KMS CloudTrail events the tampering rule forwards to the inspector (jwtkeys.names says
# which ones the keeper itself makes).
KMS_CHANGE_EVENTS: Final = (*KMS_EVENTS_MADE_BY_KEEPER, *KMS_EVENTS_NEVER_MADE_BY_KEEPER)
KMS_SIGN_EVENT: Final = names.KMS_SIGN_EVENT
# `Sign` is a read-only management event: a rule in the plain ENABLED state never sees it.
TAMPERING_RULE_STATE: Final = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"

DEFAULT_RUNBOOK_URL: Final = "docs/runbook.md"

# ---- Alarm thresholds (the alarms in infra/monitoring.py; their meaning in docs/runbook.md)

# Signer metrics are aggregated over this period.
SIGNER_ALARM_PERIOD_SECONDS: Final = 300
# The longest silence the no-tokens alarm can watch: CloudWatch evaluates at most a day
# of periods shorter than an hour.
MAX_SILENCE_MINUTES: Final = 1440
# Keeper metrics come once per tick: never aggregate over less than one tick.
MIN_KEEPER_ALARM_PERIOD_SECONDS: Final = 300
# Rotation is overdue when the current key outlives the rotation period by this much:
# at least an hour, or a tenth of the period for long periods.
ROTATION_OVERDUE_MIN_MARGIN_SECONDS: Final = 3600
ROTATION_OVERDUE_MARGIN_FRACTION: Final = 0.1
# Ticks missed in a row before "keeper not running".
MISSED_TICK_PERIODS: Final = 3
# ServiceNow certificates are renewed well before expiry; this close means renewal stalled.
CERTIFICATE_EXPIRY_ALARM_DAYS: Final = 14
# Share of sign attempts failing (not refused: failing) that pages someone.
SIGNING_FAILURE_RATE_PERCENT: Final = 5.0
# KMS throttles within one signer period: a few are retried away, a run of them is not.
KMS_THROTTLES_PER_PERIOD: Final = 10
# Refused sign requests within one period that look like misuse rather than a typo.
REFUSED_SIGN_REQUESTS_PER_PERIOD: Final = 50
# Share of tokens refused by the API authorizer (over at least this many requests in a
# period) that looks like an attack or a broken client rather than stray expiries.
AUTHORIZER_REFUSAL_RATE_PERCENT: Final = 20.0
AUTHORIZER_MIN_REQUESTS_FOR_RATE: Final = 20
# Width of the TokensIssued anomaly band, in standard deviations.
TOKENS_ISSUED_BAND_STD_DEVS: Final = 3.0
# Async keeper invocations throttled before it is worth a look (a reservation, when a
# stage sets one, or an exhausted account pool; async invocations are retried).
KEEPER_THROTTLES_PER_PERIOD: Final = 5
