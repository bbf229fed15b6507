"""The tampering inspector: KMS CloudTrail events, judged in a function of their own.

EventBridge forwards every KMS management event and every foreign `Sign` of the
account, including other keysets' signing traffic. Judging them in the keeper would
queue them behind (and ahead of) the ticks; this function only reads the registry, so
a burst costs concurrency here and nothing there. Every event is counted
(KmsEventsInspected), so a burst shows on the dashboard instead of vanishing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jwtkeys import metrics_catalog as catalog
from jwtkeys.errors import InvalidRequest
from jwtkeys.keeper.state_store import RegistryStore
from jwtkeys.keeper.tampering import inspect_kms_event, is_cloudtrail_kms_event
from jwtkeys.observability import MetricsRecorder
from jwtkeys.settings import KeeperSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class TamperingInspector:
    """Counts KMS CloudTrail events, and the foreign ones that touched a keyset key."""

    def __init__(
        self,
        settings: KeeperSettings,
        registry: RegistryStore,
        metrics: MetricsRecorder,
        logger: logging.Logger | Any,
    ) -> None:
        self.settings = settings
        self._registry = registry
        self._metrics = metrics
        self._log = logger

    @classmethod
    def create(
        cls,
        settings: KeeperSettings,
        s3: S3Client,
        *,
        metrics: MetricsRecorder | None = None,
        logger: logging.Logger | Any | None = None,
    ) -> TamperingInspector:
        return cls(
            settings,
            RegistryStore(s3, settings.bucket),
            metrics or MetricsRecorder(catalog.INSPECTOR_SERVICE, settings.keyset),
            logger or logging.getLogger("jwtkeys.inspector"),
        )

    def handle(self, event: object) -> dict[str, Any]:
        """Judge one event; anything but a KMS CloudTrail event is refused, uncounted."""
        if not is_cloudtrail_kms_event(event):
            raise InvalidRequest(
                "not_a_kms_event", "the inspector takes KMS CloudTrail events only"
            )
        assert isinstance(event, Mapping)
        try:
            # Counted before the registry is read: an event that then fails is still seen,
            # and Lambda retries it (then the failure queue holds it).
            self._metrics.add(catalog.KMS_EVENTS_INSPECTED, 1)
            inspection = inspect_kms_event(
                event,
                (entry.arn for entry in self._registry.load().keys),
                self.settings.keeper_role_arn,
                self.settings.signer_role_arn,
            )
            self._metrics.add(catalog.FOREIGN_KEY_ACTIVITY, 1 if inspection.foreign else 0)
            if inspection.foreign:
                self._log.warning(
                    "foreign activity on a keyset key",
                    extra={
                        "event": inspection.event,
                        "principal": inspection.principal,
                        "keys": inspection.keys,
                    },
                )
            return inspection.to_summary()
        finally:
            self._metrics.flush()
