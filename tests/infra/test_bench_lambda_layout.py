"""The bench's Lambda-like filesystem: the staged layers, read-only, run by the runtime's Python."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from infra.layers import runtime_interpreter
from jwtkeys_tools.bench.lambda_layout import lambda_filesystem

_WHERE_FROM = """
import json, sys
import botocore.session, jwtkeys.signer.service
print(json.dumps({
    "botocore": botocore.session.__file__,
    "jwtkeys": jwtkeys.signer.service.__file__,
    "cached": jwtkeys.signer.service.__spec__.cached,
    "dont_write": sys.flags.dont_write_bytecode,
}))
"""


def test_layers_are_staged_read_only_and_imported_from_there() -> None:
    interpreter, _ = runtime_interpreter()
    with lambda_filesystem() as layout:
        # Given the layout: both layers' code under /opt/python, the handler in /var/task
        assert layout.handler.is_file()
        assert (layout.opt / "python" / "jwtkeys" / "signer" / "__pycache__").is_dir()
        for folder in (layout.opt, layout.opt / "python" / "botocore", layout.task):
            assert not stat.S_IMODE(folder.stat().st_mode) & 0o222, folder

        # When the runtime's Python imports the signer's modules in its environment
        result = subprocess.run(
            [str(interpreter), "-S", "-s", "-c", _WHERE_FROM],
            env=layout.environ(dict(os.environ)),
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(result.stdout)

        # Then everything came from /opt/python, with the shipped bytecode beside it
        opt_python = str(layout.opt / "python")
        assert found["botocore"].startswith(opt_python)
        assert found["jwtkeys"].startswith(opt_python)
        assert os.path.isfile(found["cached"])
        assert found["dont_write"] == 1
        assert not (layout.opt.parent / "no-bytecode").exists()
