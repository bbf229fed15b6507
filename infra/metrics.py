"""CloudWatch metric objects built from the runtime's metrics catalog, never by hand.

Alarms and dashboard both come through here, so a metric name or a dimension set can
only be one the functions emit (`jwtkeys.metrics_catalog`).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from jwtkeys.metrics_catalog import MetricSpec


class CatalogMetrics:
    """Metrics of one keyset, on exactly the dimension sets the catalog lists."""

    def __init__(self, keyset: str) -> None:
        self.keyset = keyset

    def dimensions(self, spec: MetricSpec, **extra: str) -> dict[str, str]:
        """The full dimension map of `spec`; every dimension must get a value."""
        values = {"keyset": self.keyset, "service": spec.service, **extra}
        missing = sorted(set(spec.dimensions) - set(values))
        unexpected = sorted(set(values) - set(spec.dimensions))
        if missing or unexpected:
            raise ValueError(
                f"{spec.name}: dimensions {spec.dimensions} cannot be filled from"
                f" {sorted(values)} (missing {missing}, unexpected {unexpected})"
            )
        return values

    def metric(
        self, spec: MetricSpec, statistic: str, period_seconds: int, **extra: str
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=spec.namespace,
            metric_name=spec.name,
            dimensions_map=self.dimensions(spec, **extra),
            statistic=statistic,
            period=Duration.seconds(period_seconds),
            label=spec.name,
        )

    def search_by(
        self, spec: MetricSpec, dimension: str, statistic: str, period_seconds: int
    ) -> cloudwatch.MathExpression:
        """One line per value of `dimension` (e.g. refusals by `reason`)."""
        dimension_names = ",".join(spec.dimensions)
        query = (
            f'{{{spec.namespace},{dimension_names}}} MetricName="{spec.name}"'
            f' keyset="{self.keyset}" service="{spec.service}"'
        )
        if dimension not in spec.dimensions:
            raise ValueError(f"{spec.name} has no dimension {dimension!r}")
        return cloudwatch.MathExpression(
            expression=f"SEARCH('{query}', '{statistic}', {period_seconds})",
            label=f"{spec.name} by {dimension}",
            period=Duration.seconds(period_seconds),
        )
