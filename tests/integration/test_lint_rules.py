"""The lint rules the project relies on really fire (ruff run on probe sources)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """import os
import time
from time import sleep


def f() -> float:
    sleep(1)
    return time.time() + len(os.environ)
"""


def _ruff(filename: str, source: str) -> str:
    # The project's own ruff (the pinned one, beside this interpreter), else the PATH's.
    beside = Path(sys.executable).with_name("ruff")
    ruff = str(beside) if beside.exists() else (shutil.which("ruff") or "ruff")
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "concise", "--stdin-filename", filename],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return result.stdout


def test_the_runtime_package_may_not_read_the_time_sleep_or_the_environment() -> None:
    found = _ruff("layers/core/jwtkeys/keeper/probe.py", PROBE)
    assert found.count("TID251") == 3, found
    for banned in ("`time.sleep`", "`time.time`", "`os.environ`"):
        assert banned in found


@pytest.mark.parametrize(
    "filename", ["tools/jwtkeys_tools/local/probe.py", "functions/sign/probe.py"]
)
def test_tooling_and_handlers_may(filename: str) -> None:
    assert "TID251" not in _ruff(filename, PROBE)


def test_a_function_past_the_complexity_limit_is_refused() -> None:
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(13))
    found = _ruff(
        "tools/jwtkeys_tools/probe.py", f"def f(x: int) -> int:\n{branches}    return 0\n"
    )
    assert "C901" in found
