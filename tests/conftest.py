"""Shared fixtures: the local AWS endpoint, the ServiceNow emulator and a local keyset."""

# Support modules are plugins (their fixtures found by name, their asserts rewritten);
# tests import only their helpers and constants, never a test_*.py module.
pytest_plugins = [
    "tests.lambda_fixtures",
    "tests.local_aws_fixtures",
    "tests.servicenow_fixtures",
    "tests.stack_fixtures",
    # Last: it builds on the modules above.
    "tests.servicenow_sync_fixtures",
]
