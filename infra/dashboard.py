"""The keyset's CloudWatch dashboard: keys, tokens, refusals, latency, drift, ServiceNow."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from jwtkeys import metrics_catalog as catalog

from .constants import MIN_KEEPER_ALARM_PERIOD_SECONDS, SIGNER_ALARM_PERIOD_SECONDS
from .metrics import CatalogMetrics

_WIDTH = 8
_HEIGHT = 6


class Dashboard(Construct):
    """One dashboard per keyset, named after it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        keyset: str,
        tick_interval: int,
        rotation_period: int,
        signer: lambda_.IFunction,
        keeper: lambda_.IFunction,
        alarms: Sequence[cloudwatch.IAlarm],
        servicenow: bool,
        authorizer: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        metrics = CatalogMetrics(keyset)
        keeper_period = max(MIN_KEEPER_ALARM_PERIOD_SECONDS, tick_interval)
        signer_period = SIGNER_ALARM_PERIOD_SECONDS

        def keeper_metric(spec: catalog.MetricSpec, statistic: str) -> cloudwatch.IMetric:
            return metrics.metric(spec, statistic, keeper_period)

        def signer_metric(spec: catalog.MetricSpec, statistic: str) -> cloudwatch.IMetric:
            return metrics.metric(spec, statistic, signer_period)

        def graph(
            title: str,
            left: Sequence[cloudwatch.IMetric],
            width: int = _WIDTH,
            annotations: Sequence[cloudwatch.HorizontalAnnotation] = (),
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                left=list(left),
                width=width,
                height=_HEIGHT,
                left_annotations=list(annotations) or None,
            )

        key_age_days = cloudwatch.MathExpression(
            expression="age / 86400",
            using_metrics={"age": keeper_metric(catalog.CURRENT_KEY_AGE_SECONDS, "Maximum")},
            label="Current key age (days)",
            period=Duration.seconds(keeper_period),
        )
        rows: list[list[cloudwatch.IWidget]] = [
            [
                cloudwatch.AlarmStatusWidget(
                    title="Alarms", alarms=list(alarms), width=24, height=_HEIGHT
                )
            ],
            [
                graph(
                    "Key age",
                    [key_age_days],
                    # Where the line should turn down: the keeper rotates at this age.
                    annotations=[
                        cloudwatch.HorizontalAnnotation(
                            value=rotation_period / 86400, label="rotation period (days)"
                        )
                    ],
                ),
                graph(
                    "Key states and transitions",
                    [
                        keeper_metric(catalog.PUBLISHED_KEYS, "Maximum"),
                        keeper_metric(catalog.KEYS_CREATED, "Sum"),
                        keeper_metric(catalog.KEYS_PROMOTED, "Sum"),
                        keeper_metric(catalog.KEYS_RETIRED, "Sum"),
                        keeper_metric(catalog.KEYS_REVOKED, "Sum"),
                    ],
                ),
                graph(
                    "Keeper ticks and failures",
                    [
                        keeper_metric(catalog.KEEPER_TICKS, "Sum"),
                        keeper_metric(catalog.ROTATION_FAILURES, "Sum"),
                        keeper_metric(catalog.FOREIGN_KEY_ACTIVITY, "Sum"),
                    ],
                ),
            ],
            [
                graph("Tokens issued", [signer_metric(catalog.TOKENS_ISSUED, "Sum")]),
                graph(
                    "Tokens per key id",
                    [metrics.search_by(catalog.TOKENS_ISSUED_BY_KID, "kid", "Sum", signer_period)],
                ),
                graph(
                    "Refusals by reason",
                    [
                        metrics.search_by(
                            catalog.SIGN_REQUESTS_REJECTED_BY_REASON, "reason", "Sum", signer_period
                        )
                    ],
                ),
                graph(
                    "Signing latency (ms)",
                    [
                        signer_metric(catalog.SIGN_LATENCY_MS, "p50"),
                        signer_metric(catalog.SIGN_LATENCY_MS, "p99"),
                    ],
                ),
            ],
            [
                graph(
                    "Throttles",
                    [
                        signer_metric(catalog.KMS_THROTTLED, "Sum"),
                        signer.metric_throttles(statistic="Sum"),
                        keeper.metric_throttles(statistic="Sum"),
                    ],
                ),
                graph(
                    "Drift",
                    [
                        keeper_metric(catalog.JWKS_DRIFT, "Maximum"),
                        *(
                            [keeper_metric(catalog.SERVICENOW_DRIFT, "Maximum")]
                            if servicenow
                            else []
                        ),
                    ],
                ),
                graph("Signing failures", [signer_metric(catalog.SIGNING_FAILURES, "Sum")]),
            ],
        ]
        if servicenow:
            rows.append(
                [
                    graph(
                        "ServiceNow sync",
                        [
                            keeper_metric(catalog.SERVICENOW_SYNC_FAILURES, "Sum"),
                            keeper_metric(catalog.CANARY_EXCHANGE_FAILURES, "Sum"),
                            keeper_metric(catalog.SERVICENOW_RECORDS, "Maximum"),
                            keeper_metric(catalog.UNCONFIRMED_PROMOTIONS, "Sum"),
                            keeper_metric(catalog.FOREIGN_TRUST_RECORDS, "Maximum"),
                        ],
                        width=12,
                    ),
                    graph(
                        "Certificate expiry (days)",
                        [keeper_metric(catalog.CERTIFICATE_EXPIRES_IN_DAYS, "Minimum")],
                        width=12,
                    ),
                ]
            )
        if authorizer:
            rows.append(
                [
                    graph(
                        "API authorizer",
                        [
                            signer_metric(catalog.AUTHORIZER_ACCEPTED, "Sum"),
                            signer_metric(catalog.AUTHORIZER_REFUSED, "Sum"),
                            signer_metric(catalog.AUTHORIZER_JWKS_FAILURES, "Sum"),
                        ],
                        width=12,
                    ),
                    graph(
                        "API authorizer refusals by reason",
                        [
                            metrics.search_by(
                                catalog.AUTHORIZER_REFUSED_BY_REASON, "reason", "Sum", signer_period
                            )
                        ],
                        width=12,
                    ),
                ]
            )
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"jwtkeys-{keyset}",
            widgets=rows,
        )
