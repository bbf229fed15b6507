"""What every local stand-in (AWS endpoint, ServiceNow emulator, CDN, Lambda APIs) shares.

Each is started once, used as a context manager by tests and tools, and stopped
idempotently; the `with` plumbing lives here so each class states only start and stop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class LocalService(ABC):
    """Start, use, stop: `with Service() as running:` stops it however the block ends."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
