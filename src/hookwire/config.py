"""``Settings``: configuration from ``HOOKWIRE_*`` environment variables and a ``.env`` file.

``Settings()`` reads, in order of precedence: keyword arguments, the environment
(``HOOKWIRE_USER_ID=u1``), then ``.env`` in the working directory. The OpenAI fields also
read the SDK's own variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_ORG_ID``).
Secrets are ``SecretStr``: they never show in ``repr`` or logs; nor do passwords in the URLs
(``database_url``, ``openai_base_url``), which ``repr`` shows redacted.

``get_user_data()`` gives the user as the chat-history handler takes it::

    {"user_id": "user-123", "details": {"given_name": "John", "family_name": "Doe"},
     "org_id": "org-456"}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .redaction import redact_url

__all__ = ["Settings"]

_URL_FIELDS = frozenset({"database_url", "openai_base_url"})


class Settings(BaseSettings):
    """hookwire's settings (see the module docstring); every field is ``HOOKWIRE_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="HOOKWIRE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # -- request context -----------------------------------------------------------------------
    conversation_id: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None

    # -- the user ------------------------------------------------------------------------------
    user_id: str | None = None
    org_id: str | None = None
    user_given_name: str | None = None
    user_family_name: str | None = None
    user_email: str | None = None
    #: Further user details, as JSON in the environment:
    #: ``HOOKWIRE_USER_DETAILS='{"tier": "pro"}'``.
    user_details: dict[str, Any] = Field(default_factory=dict)
    is_anonymous: bool = False

    # -- the agent and where history goes ------------------------------------------------------
    realm: str = "main"
    agent_title: str | None = None
    agent_slug: str | None = None
    database_url: str = "sqlite+aiosqlite:///hookwire.db"

    # -- the model -----------------------------------------------------------------------------
    model: str = "gpt-4o-mini"
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "HOOKWIRE_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"
        ),
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "HOOKWIRE_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url"
        ),
    )
    openai_organization: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "HOOKWIRE_OPENAI_ORGANIZATION", "OPENAI_ORG_ID", "openai_organization"
        ),
    )
    openai_timeout: float = 60.0
    max_retries: int = Field(default=2, ge=0)

    # -- logs ----------------------------------------------------------------------------------
    log_path: str | None = None

    @field_validator("realm")
    @classmethod
    def _realm_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("realm must not be empty (the default is 'main')")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The fields ``repr`` and ``str`` show, the URLs' passwords hidden."""
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                value = redact_url(value)
            yield name, value

    def get_user_data(self) -> dict[str, Any]:
        """The user as ``{"user_id", "details": {...}, "org_id"}`` (details only if known)."""
        details: dict[str, Any] = {}
        if self.user_given_name is not None:
            details["given_name"] = self.user_given_name
        if self.user_family_name is not None:
            details["family_name"] = self.user_family_name
        if self.user_email is not None:
            details["email"] = self.user_email
        details.update(self.user_details)
        return {"user_id": self.user_id, "details": details, "org_id": self.org_id}

    def request_context(self) -> dict[str, str]:
        """The request-context keywords these settings set (for ``hookwire.trace(...)``)."""
        values = {
            "conversation_id": self.conversation_id,
            "correlation_id": self.correlation_id,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "org_id": self.org_id,
        }
        return {k: v for k, v in values.items() if v is not None}

    def openai_client(self, **kwargs: Any) -> Any:
        """An ``OpenAIClient`` configured from these settings (keywords override)."""
        from .llms import OpenAIClient

        options: dict[str, Any] = {
            "api_key": self.openai_api_key.get_secret_value() if self.openai_api_key else None,
            "organization": self.openai_organization,
            "base_url": self.openai_base_url,
            "model": self.model,
            "timeout": self.openai_timeout,
            "max_retries": self.max_retries,
        }
        options.update(kwargs)
        return OpenAIClient(**options)
