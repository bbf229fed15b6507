"""What the commands share: one-line refusals and argument checks."""

from __future__ import annotations

import argparse
import sys

EXIT_REFUSED = 1


def refused(command: str, name: str, message: str) -> int:
    """Write the one stderr line of a refusal and return its exit code."""
    # Exactly one line, whatever the message holds, so scripts can read it.
    detail = "".join(c if c.isprintable() else "?" for c in " ".join(message.split()))
    sys.stderr.write(f"jwtkeys {command}: refused: {name}: {detail}\n")
    return EXIT_REFUSED


def non_empty(text: str) -> str:
    """An argparse type: any string but the empty one."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text
