"""Shared fixtures: the local AWS endpoint, the ServiceNow emulator and a local keyset."""

pytest_plugins = [
    "tests.local_aws_fixtures",
    "tests.servicenow_fixtures",
    "tests.stack_fixtures",
    # Last: it builds on the modules above.
    "tests.servicenow_sync_fixtures",
]
