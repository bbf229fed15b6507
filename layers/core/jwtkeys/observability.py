"""Metrics and logs: one recorder per function, emitting exactly the catalog's shapes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from jwtkeys.metrics_catalog import MetricSpec
from jwtkeys.names import METRIC_NAMESPACE


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")


class MetricsRecorder:
    """Buffers metrics of one invocation and writes them as EMF lines on flush.

    Each dimension set gets its own EMF document: EMF applies every dimension set of a
    document to every metric in it, so mixing them would emit shapes no alarm watches.
    Powertools' `Metrics` keeps class-level state shared by every instance; the keeper
    and the signer running in one process (tests, the demo) must not mix, hence the
    provider is used directly.
    """

    def __init__(self, service: str, keyset: str, write: Callable[[str], None] = _stdout) -> None:
        self.service = service
        self.keyset = keyset
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
                self._write(json.dumps(provider.serialize_metric_set(), separators=(",", ":")))
                provider.clear_metrics()
