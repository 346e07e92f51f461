"""``LogOnce``: a failure that can repeat, logged at ERROR the first time and at DEBUG after.

For the background writers: a database that refuses rows or a queue that stays full would
otherwise fill the log with the same message; what it cost is counted where it happens."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["LogOnce"]

logger = logging.getLogger("hookwire")


class LogOnce:
    """Logs through the ``hookwire`` logger: at ERROR the first time (with ``exc_info``), at
    DEBUG after, until :meth:`reset`."""

    __slots__ = ("logged",)

    def __init__(self) -> None:
        self.logged = False

    def __call__(self, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        first, self.logged = not self.logged, True
        if first:
            logger.error(message, *args, exc_info=exc_info)
        else:
            logger.debug(message, *args)

    def reset(self) -> None:
        """Log the next one at ERROR again (the failure ended, the next is news)."""
        self.logged = False
