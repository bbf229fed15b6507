"""The bench's Lambda-like /opt: the layers' code, with or without bytecode, nothing else."""

from __future__ import annotations

from pathlib import Path

from jwtkeys_tools.bench.lambda_layout import dependency_closure, stage_opt


def test_the_closure_is_the_dependency_layers_pins_and_their_dependencies() -> None:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in dependency_closure()}

    assert {"boto3", "botocore", "pyjwt", "cryptography", "aws-lambda-powertools"} <= names
    assert {"s3transfer", "jmespath", "urllib3"} <= names  # pulled in by the pins
    assert not names & {"aws-cdk-lib", "pytest", "moto"}  # nothing of the development set


def test_opt_ships_no_bytecode_unless_asked(tmp_path: Path) -> None:
    plain = stage_opt(tmp_path / "plain")
    compiled = stage_opt(tmp_path / "compiled", bytecode=True)

    for python in (plain, compiled):
        assert (python / "jwtkeys" / "signer" / "service.py").is_file()
        assert (python / "botocore" / "session.py").is_file()
        assert (python / "jwt" / "api_jws.py").is_file()
        # Development-only code never reaches the layers.
        assert not (python / "jwtkeys_tools").exists()
    assert not list(plain.rglob("*.pyc"))
    assert list((compiled / "botocore" / "__pycache__").glob("session.*.pyc"))
