"""Fixtures for tests that talk to the local AWS endpoint (moto + fidelity fixes, over HTTP).

The root conftest lists this module in `pytest_plugins`, so every test can use them.

Fixtures:
- `local_aws_server` (session): one running `LocalAws` for the whole session. State
  persists between tests that use it directly.
- `local_aws` (function): that endpoint with every moto resource wiped, the call log
  emptied and no fault rules; fault rules are cleared again after the test.
- `local_aws_env` (function): `local_aws`, with its `env()` (AWS_ENDPOINT_URL, test
  credentials, region) set in `os.environ` for the test, for code that builds its
  own boto3 clients.

`no_retries()` gives a botocore Config that makes exactly one attempt, so an injected
fault surfaces as the exception the caller sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.config import Config

from jwtkeys_tools.local.aws_endpoint import LocalAws


def no_retries() -> Config:
    """A botocore Config with a single attempt (no retry hides an injected fault)."""
    return Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture(scope="session")
def local_aws_server() -> Iterator[LocalAws]:
    """One local AWS endpoint for the whole test session."""
    with LocalAws() as aws:
        yield aws


@pytest.fixture
def local_aws(local_aws_server: LocalAws) -> Iterator[LocalAws]:
    """The session's endpoint, empty: no resources, no calls logged, no faults."""
    local_aws_server.clear_faults()
    local_aws_server.reset()
    local_aws_server.reset_calls()
    yield local_aws_server
    local_aws_server.clear_faults()


@pytest.fixture
def local_aws_env(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """`local_aws`, with boto3's environment pointed at it for the test."""
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    return local_aws
