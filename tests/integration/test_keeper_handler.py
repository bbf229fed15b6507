"""The keeper function's handler, loaded as Lambda would: EMF shapes, refused events."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from jwtkeys import metrics_catalog as catalog
from jwtkeys.clock import SystemClock
from jwtkeys.errors import InvalidRequest
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.servicenow_setup import configure_servicenow
from jwtkeys_tools.local.stack import LocalStack

from ..lambda_fixtures import LambdaContext, emitted_metrics, load_handler


@pytest.fixture(scope="module")
def servicenow_on_real_time() -> Iterator[ServiceNowEmulator]:
    """An instance on the wall clock: the deployed keeper's clock is the real one."""
    with ServiceNowEmulator(SystemClock()) as emulator:
        yield emulator


@pytest.fixture
def keeper(
    stack: LocalStack,
    local_aws: LocalAws,
    servicenow_on_real_time: ServiceNowEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> ModuleType:
    """A cold-started keeper handler whose keyset syncs to the ServiceNow emulator."""
    servicenow_on_real_time.reset()
    stack.config.servicenow_env = configure_servicenow(
        servicenow_on_real_time, local_aws.client("secretsmanager"), stack.config.keyset
    )
    stack.config.issuer = "jwtkeys-demo-client"
    environ = {**local_aws.env(), **stack.keeper_env()}
    environ |= stack.role_environ(stack.config.keeper_role_arn)
    return load_handler("keeper", environ, monkeypatch)


def test_every_keeper_metric_is_emitted_with_the_catalogs_dimensions(
    keeper: ModuleType,
    stack: LocalStack,
    servicenow_on_real_time: ServiceNowEmulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    summary = keeper.lambda_handler({"action": "tick"}, LambdaContext())
    assert summary["current_kid"], servicenow_on_real_time.log
    emitted = emitted_metrics(capsys.readouterr().out)
    keeper_specs = [spec for spec in catalog.ALL_METRICS if spec.service == catalog.KEEPER_SERVICE]
    missing = [
        spec.name for spec in keeper_specs if (spec.name, frozenset(spec.dimensions)) not in emitted
    ]
    assert missing == []


@pytest.mark.parametrize(
    "event",
    [
        {"source": "aws.s3", "detail-type": "AWS API Call via CloudTrail", "detail": {}},
        # KMS CloudTrail events are the inspector's, never the keeper's.
        {"source": "aws.kms", "detail-type": "AWS API Call via CloudTrail", "detail": {}},
        {"action": "tick", "force": True},
        {"action": "promote"},
        {"Records": []},
    ],
)
def test_other_events_are_refused_and_change_nothing(
    keeper: ModuleType, stack: LocalStack, event: dict[str, object]
) -> None:
    with pytest.raises(InvalidRequest):
        keeper.lambda_handler(event, LambdaContext())
    assert stack.kms.list_keys()["Keys"] == []
