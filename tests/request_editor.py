"""``RequestEditor``: a handler that tries to rewrite the request it is shown. The tests of
hookwire's clients and of each SDK bridge check that none of its edits reaches the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hookwire import BaseCallback


def _add_a_stop(params: dict[str, Any]) -> None:
    params["stop"].append("EDITED")


class RequestEditor(BaseCallback):
    """Tries to change the last message's content, add a message, and change the call's
    parameters (``edit_params``, by default adding to ``stop``); ``refused`` names the edits
    that raised ``TypeError``, in that order, call after call."""

    def __init__(self, edit_params: Callable[[dict[str, Any]], None] = _add_a_stop) -> None:
        self.refused: list[str] = []
        self._edit_params = edit_params

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        for name, edit in (
            ("content", lambda: prompt[-1].__setitem__("content", "EDITED")),
            ("message", lambda: prompt.append({"role": "user", "content": "more"})),
            ("params", lambda: self._edit_params(kwargs["invocation_params"])),
        ):
            try:
                edit()
            except TypeError:
                self.refused.append(name)
