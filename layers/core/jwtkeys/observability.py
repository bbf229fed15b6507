"""Metrics and logs: one recorder per function, emitting exactly the catalog's shapes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from jwtkeys.metrics_catalog import MetricSpec
from jwtkeys.names import METRIC_NAMESPACE

# Lambda's application log levels, least to most severe; the function's own level is in
# this variable when log-level filtering is on.
LAMBDA_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LAMBDA_LOG_LEVEL_ENV = "AWS_LAMBDA_LOG_LEVEL"
# What Lambda assumes for a JSON line that names no level.
DEFAULT_LOG_LEVEL = "INFO"


def lambda_log_level(environ: Mapping[str, str]) -> str:
    """The function's application log level, as Lambda's log-level filter applies it."""
    level = environ.get(LAMBDA_LOG_LEVEL_ENV, DEFAULT_LOG_LEVEL).upper()
    return level if level in LAMBDA_LOG_LEVELS else DEFAULT_LOG_LEVEL


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")


class MetricsRecorder:
    """Buffers metrics of one invocation and writes them as EMF lines on flush.

    Each dimension set gets its own EMF document: EMF applies every dimension set of a
    document to every metric in it, so mixing them would emit shapes no alarm watches.
    Powertools' `Metrics` keeps class-level state shared by every instance; the keeper
    and the signer running in one process (tests, the demo) must not mix, hence the
    provider is used directly.

    Lambda's log-level filter treats a JSON line without a `level` as INFO: raising a
    function's log level to WARN would silently drop every metric. Each document
    therefore carries `level` = the function's own log level, which the filter keeps.
    """

    def __init__(
        self,
        service: str,
        keyset: str,
        write: Callable[[str], None] = _stdout,
        level: str = DEFAULT_LOG_LEVEL,
    ) -> None:
        self.service = service
        self.keyset = keyset
        self.level = level
        self._write = write
        # One provider per dimension set, kept across invocations: building one costs
        # more than the metrics it carries, and this runs on the signing hot path.
        self._providers: dict[tuple[tuple[str, str], ...], AmazonCloudWatchEMFProvider] = {}

    def add(self, spec: MetricSpec, value: float, **extra_dimensions: str) -> None:
        """Record `value` for `spec`; the extra dimensions must complete the spec's set."""
        dimensions = {"keyset": self.keyset, **extra_dimensions}
        if spec.service != self.service or set(spec.dimensions) != {*dimensions, "service"}:
            raise ValueError(f"{spec.name} is not emitted with dimensions {sorted(dimensions)}")
        key = tuple(sorted(dimensions.items()))
        provider = self._providers.get(key)
        if provider is None:
            provider = AmazonCloudWatchEMFProvider(
                namespace=METRIC_NAMESPACE, service=self.service, default_dimensions=dimensions
            )
            self._providers[key] = provider
        provider.add_metric(name=spec.name, unit=spec.unit, value=value)

    def flush(self) -> None:
        """Write what was recorded; an invocation that recorded nothing writes nothing."""
        for provider in self._providers.values():
            if provider.metric_set:
                document = {**provider.serialize_metric_set(), "level": self.level}
                self._write(json.dumps(document, separators=(",", ":")))
                provider.clear_metrics()
