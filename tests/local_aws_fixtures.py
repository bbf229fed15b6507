"""Fixtures for tests that talk to the local AWS endpoint (moto + fidelity fixes, over HTTP).

The root conftest lists this module in `pytest_plugins`, so every test can use them.

Fixtures:
- `local_aws_server` (session): one running `LocalAws` for the whole session. State
  persists between tests that use it directly. Every deployment built on it is IAM
  simulated (`tests.iam_simulation`); requests left unchecked by `local_aws` are
  checked when the session ends.
- `iam_session` (session): the IAM simulation (simulator process, synthesized policies).
- `local_aws` (function): that endpoint with every moto resource wiped, the call log
  emptied and no fault rules; fault rules are cleared again after the test, and every
  request a function role made during the test must be allowed by the deployed
  policies.
- `local_aws_env` (function): `local_aws`, with its `env()` (AWS_ENDPOINT_URL, test
  credentials, region) set in `os.environ` for the test, for code that builds its
  own boto3 clients.

`no_retries()` gives a botocore Config that makes exactly one attempt, so an injected
fault surfaces as the exception the caller sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config

from jwtkeys_tools.local.aws_endpoint import LocalAws
from tests.iam_simulation import IamSession


def no_retries() -> Config:
    """A botocore Config with a single attempt (no retry hides an injected fault)."""
    return Config(retries={"mode": "standard", "total_max_attempts": 1})


_IAM_SESSION = pytest.StashKey[IamSession]()


@pytest.fixture(scope="session")
def iam_session(pytestconfig: pytest.Config) -> Iterator[IamSession]:
    """The session's IAM simulator and the synthesized policies of its deployments."""
    session = IamSession()
    pytestconfig.stash[_IAM_SESSION] = session
    yield session
    session.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say how many requests the IAM simulation held, and which it could not."""
    session = config.stash.get(_IAM_SESSION, None)
    if session is not None:
        for line in session.summary():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def local_aws_server(iam_session: IamSession) -> Iterator[LocalAws]:
    """One local AWS endpoint for the whole test session, its deployments IAM simulated."""
    with LocalAws() as aws:
        aws.deployment_hooks.append(iam_session.on_deployment)
        yield aws
        denials = iam_session.check(aws)
        assert not denials, "the deployed policies deny:\n" + "\n".join(denials)


@pytest.fixture
def local_aws(local_aws_server: LocalAws, iam_session: IamSession) -> Iterator[LocalAws]:
    """The session's endpoint, empty: no resources, no calls logged, no faults."""
    local_aws_server.clear_faults()
    local_aws_server.reset()
    local_aws_server.reset_calls()
    local_aws_server.reset_iam_requests()
    yield local_aws_server
    local_aws_server.clear_faults()
    denials = iam_session.check(local_aws_server)
    assert not denials, "the deployed policies deny:\n" + "\n".join(denials)


@pytest.fixture
def local_aws_env(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """`local_aws`, with boto3's environment pointed at it for the test."""
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    return local_aws
