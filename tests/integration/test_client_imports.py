"""What importing the callers' SDK loads, seen from a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_client_does_not_import_pysnc() -> None:
    code = (
        "import sys, jwtkeys.client, jwtkeys.client.pysnc_auth;"
        "sys.exit(1 if 'pysnc' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
