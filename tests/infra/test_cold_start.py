"""Cold start as Lambda sees it: bytecode in the staged layers, and a lean signer import.

Lambda mounts the layers read-only at /opt, so the bytecode they ship is the only
bytecode a cold start gets: it must be for the runtime's exact Python (same magic
number), unchecked-hash (the zip keeps no usable timestamps) and name the files where
Lambda puts them. The signer must not import what a token never needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra.layers import runtime_interpreter, runtime_python_version
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.settings import SignerSettings
from jwtkeys.signer.policy import SigningPolicy
from jwtkeys.signer.rules import Allowlist
from tests.infra.conftest import DEV, PROJECT_ROOT, Synth, logical_id_starting

# Checked by the runtime's own interpreter: the header is for it, the flags say
# unchecked-hash, the hash is of the source beside it, the code names /opt/python/...
_CHECK_PYCS = """
import importlib.util, json, marshal, sys
from pathlib import Path
root = Path(sys.argv[1])
tag = sys.implementation.cache_tag
problems, checked = [], 0
for source in sorted(root.rglob("*.py")):
    pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
    if not pyc.is_file():
        problems.append(f"no bytecode: {source.relative_to(root)}")
        continue
    data = pyc.read_bytes()
    checked += 1
    if data[:4] != importlib.util.MAGIC_NUMBER:
        problems.append(f"magic {data[:4]!r}: {pyc.relative_to(root)}")
    elif int.from_bytes(data[4:8], "little") != 0b01:
        problems.append(f"not unchecked-hash: {pyc.relative_to(root)}")
    elif data[8:16] != importlib.util.source_hash(source.read_bytes()):
        problems.append(f"stale: {pyc.relative_to(root)}")
    elif marshal.loads(data[16:]).co_filename != "/opt/python/" + str(source.relative_to(root)):
        problems.append(f"file name {marshal.loads(data[16:]).co_filename}")
print(json.dumps({"checked": checked, "problems": problems[:20]}))
"""

# Never needed to sign a token: boto3 (a botocore client is all the signer uses) and
# its s3transfer, PyJWT (tokens are assembled by jwtkeys.keys.kms_signer), cryptography
# (only EC signatures need it, imported then), and the keeper/ServiceNow/verify code.
_NOT_AT_COLD_START = (
    "boto3",
    "s3transfer",
    "jwt",
    "cryptography",
    "multiprocessing",
    "jwtkeys.keeper.lifecycle",
    "jwtkeys.keeper.service",
    "jwtkeys.servicenow.sync",
    "jwtkeys.servicenow.target",
    "jwtkeys.verify.token",
    "jwtkeys.keys.jwk",
)


def _layer_python(synth: Synth, prefix: str) -> Path:
    logical_id = logical_id_starting(synth.templates[DEV], "AWS::Lambda::LayerVersion", prefix)
    return synth.asset_dir(DEV, logical_id) / "python"


def _check_pycs(python_dir: Path) -> dict[str, object]:
    interpreter, _ = runtime_interpreter()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    result = subprocess.run(
        [str(interpreter), "-S", "-c", _CHECK_PYCS, str(python_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    checked: dict[str, object] = json.loads(result.stdout)
    return checked


def test_the_runtime_interpreter_is_the_runtimes_python() -> None:
    interpreter, magic = runtime_interpreter()
    result = subprocess.run(
        [str(interpreter), "-S", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    major, minor = runtime_python_version().split(".")
    assert result.stdout.strip() == f"({major}, {minor})"
    assert len(magic) == 4
    assert magic[2:] == b"\r\n"


def test_core_layer_ships_valid_bytecode_for_the_runtime(synth: Synth) -> None:
    report = _check_pycs(_layer_python(synth, "LayersCore"))

    assert report["problems"] == []
    assert isinstance(report["checked"], int)
    assert report["checked"] > 20


def test_deps_layer_ships_valid_bytecode_for_the_runtime(synth: Synth) -> None:
    report = _check_pycs(_layer_python(synth, "LayersDeps"))

    assert report["problems"] == []
    assert isinstance(report["checked"], int)
    assert report["checked"] > 500


def test_the_signer_imports_nothing_a_token_never_needs(synth: Synth) -> None:
    # Given the staged core layer and the signer's environment (an RS256 keyset)
    settings = SignerSettings(
        keyset="cold",
        rotation=RotationPolicy(),
        policy=SigningPolicy(
            issuer="cold",
            allowed_subjects=Allowlist(("svc",)),
            allowed_audiences=Allowlist(("aud",)),
            default_ttl=300,
            max_token_ttl=RotationPolicy().max_token_ttl,
        ),
    )
    env = {
        **os.environ,
        **settings.to_environ(),
        "AWS_DEFAULT_REGION": "eu-west-1",
        "PYTHONPATH": str(_layer_python(synth, "LayersCore")),
    }
    script = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('handler', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )

    # When a fresh interpreter imports the handler, as a cold start does
    result = subprocess.run(
        [sys.executable, "-c", script, str(PROJECT_ROOT / "functions" / "sign" / "handler.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    # Then the signer is ready, and none of what tokens never need was imported
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout))
    assert {"botocore.client", "jwtkeys.signer.service"} <= loaded
    imported = sorted(
        name
        for name in loaded
        for unwanted in _NOT_AT_COLD_START
        if name == unwanted or name.startswith(unwanted + ".")
    )
    assert imported == []
