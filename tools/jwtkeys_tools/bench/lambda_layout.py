"""A filesystem laid out like Lambda's for the signing function: /opt and /var/task.

Lambda extracts layers read-only into /opt, so Python can neither use nor write a
`__pycache__` of its own there: the bytecode the layers ship is all a cold start gets.
The layers are staged here by infra/layers.py exactly as for a deployment (bytecode
compiled by the runtime's Python included), except that the dependency layer is built
for this machine's CPU, since its native extensions must load here; its Python modules
and their bytecode are the same as the arm64 layer's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.constants import FUNCTIONS_DIR
from infra.layers import build_deps_layer, host_pip_platforms, stage_core_layer


@dataclass(frozen=True)
class LambdaFilesystem:
    """The read-only folders, and how to run the runtime's Python over them."""

    opt: Path
    task: Path

    @property
    def handler(self) -> Path:
        return self.task / "handler.py"

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with only /opt/python on the path and no bytecode written, as on Lambda.

        PYTHONDONTWRITEBYTECODE is what really keeps caches out: as root (the bench
        may run so) the folders' read-only modes are not enforced.
        """
        kept = {key: value for key, value in base.items() if not key.startswith("PYTHON")}
        return kept | {"PYTHONPATH": str(self.opt / "python"), "PYTHONDONTWRITEBYTECODE": "1"}

    def without_bytecode(self) -> list[str]:
        """Interpreter options that hide the shipped bytecode (a prefix with none in it)."""
        return ["-X", f"pycache_prefix={self.opt.parent / 'no-bytecode'}"]


def _set_folder_modes(root: Path, mode: int) -> None:
    for folder, _, _ in os.walk(root):
        Path(folder).chmod(mode)


@contextmanager
def lambda_filesystem(function: str = "sign") -> Iterator[LambdaFilesystem]:
    """Both layers staged into a scratch /opt and the function's code into /var/task."""
    scratch = Path(tempfile.mkdtemp(prefix="jwtkeys-lambda-"))
    layout = LambdaFilesystem(opt=scratch / "opt", task=scratch / "task")
    try:
        stage_core_layer(layout.opt)
        build_deps_layer(layout.opt, platforms=host_pip_platforms())
        layout.task.mkdir()
        shutil.copy2(FUNCTIONS_DIR / function / "handler.py", layout.handler)
        _set_folder_modes(layout.opt, 0o555)
        _set_folder_modes(layout.task, 0o555)
        yield layout
    finally:
        _set_folder_modes(scratch, 0o755)
        shutil.rmtree(scratch, ignore_errors=True)
