"""Where the functions' own output goes when a command runs their code locally.

On Lambda, JSON logs and EMF metric blobs go to CloudWatch. A local command has a
terminal instead, where they would bury the command's own answer: they go to one log
file beside the local state (named by `local up`) unless `--show-metrics` asks for them.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import TextIO

from jwtkeys.observability import MetricsRecorder
from jwtkeys_tools.cli.target import local_state_path

FUNCTIONS_LOG_NAME = "functions.log"


def functions_log_path() -> Path:
    """The log file of the functions run by local commands: beside the local state."""
    return local_state_path().parent / FUNCTIONS_LOG_NAME


def add_show_metrics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show-metrics",
        action="store_true",
        help="print the functions' EMF metric blobs on stderr instead of appending them to"
        f" {FUNCTIONS_LOG_NAME} beside the local state",
    )


class FunctionOutput(io.TextIOBase):
    """Lines the functions emit: appended to the log file, or written to `terminal`.

    A text stream, so a logger can write to it too.
    """

    def __init__(self, show: bool, terminal: TextIO | None = None) -> None:
        super().__init__()
        self.show = show
        self.path = functions_log_path()
        self._terminal = terminal

    def write(self, line: str, /) -> int:
        text = line.rstrip("\n") + "\n"
        if self.show:
            terminal = self._terminal or sys.stderr
            terminal.write(text)
            terminal.flush()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as log:
                log.write(text)
        return len(line)

    def writable(self) -> bool:
        return True

    def metrics(self, service: str, keyset: str) -> MetricsRecorder:
        def emit(line: str) -> None:
            self.write(line)

        return MetricsRecorder(service, keyset, write=emit)
