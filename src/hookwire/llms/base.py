"""The names ``hookwire.llms.base`` has always offered: the provider protocol
(``hookwire.llms.protocol``), the call engine ``BaseLLM`` (``hookwire.llms.engine``) and
``price`` (``hookwire.llms.prices``). New code may import them from those modules.
"""

from __future__ import annotations

from .engine import BaseLLM
from .prices import price
from .protocol import LLM, LLMRequest, Messages, StreamEnd, normalize_messages

__all__ = ["LLM", "BaseLLM", "LLMRequest", "Messages", "StreamEnd", "normalize_messages", "price"]
