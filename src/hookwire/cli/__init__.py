"""The ``hookwire`` command line: one module per command, assembled in ``root``."""

from __future__ import annotations

from .root import app, main

__all__ = ["app", "main"]
