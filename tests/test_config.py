"""Settings: HOOKWIRE_* environment, .env, the seed's fields and get_user_data()."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import hookwire
from hookwire.config import Settings
from hookwire.llms import OpenAIClient


def test_defaults() -> None:
    s = Settings()
    assert s.realm == "main"
    assert s.is_anonymous is False
    assert s.conversation_id is None
    assert s.database_url.startswith("sqlite")
    assert s.get_user_data() == {"user_id": None, "details": {}, "org_id": None}
    assert hookwire.Settings is Settings


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKWIRE_USER_ID", "user-123")
    monkeypatch.setenv("HOOKWIRE_ORG_ID", "org-456")
    monkeypatch.setenv("HOOKWIRE_USER_GIVEN_NAME", "John")
    monkeypatch.setenv("HOOKWIRE_USER_FAMILY_NAME", "Doe")
    monkeypatch.setenv("HOOKWIRE_USER_DETAILS", '{"tier": "pro"}')
    monkeypatch.setenv("HOOKWIRE_IS_ANONYMOUS", "true")
    monkeypatch.setenv("HOOKWIRE_CONVERSATION_ID", "conv-1")
    monkeypatch.setenv("HOOKWIRE_AGENT_TITLE", "Customer Support Agent")
    s = Settings()
    assert s.get_user_data() == {
        "user_id": "user-123",
        "details": {"given_name": "John", "family_name": "Doe", "tier": "pro"},
        "org_id": "org-456",
    }
    assert s.is_anonymous is True
    assert s.agent_title == "Customer Support Agent"
    assert s.request_context() == {
        "conversation_id": "conv-1",
        "user_id": "user-123",
        "org_id": "org-456",
    }


def test_dotenv_file_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("HOOKWIRE_REALM=staging\nHOOKWIRE_REQUEST_ID=from-file\n")
    monkeypatch.setenv("HOOKWIRE_REQUEST_ID", "from-env")
    s = Settings()
    assert s.realm == "staging"
    assert s.request_id == "from-env"
    assert Settings(request_id="explicit").request_id == "explicit"


def test_openai_settings_read_sdk_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    s = Settings()
    assert s.openai_api_key is not None
    assert s.openai_api_key.get_secret_value() == "sk-secret-value"
    assert "sk-secret-value" not in repr(s)
    assert "sk-secret-value" not in str(s.model_dump())
    client = s.openai_client(model="gpt-4o")
    assert isinstance(client, OpenAIClient)
    assert client.model == "gpt-4o"
    assert client.base_url == "http://127.0.0.1:9/v1"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="realm"):
        Settings(realm=" ")
    monkeypatch.setenv("HOOKWIRE_MAX_RETRIES", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_settings_and_client_reprs_hide_passwords_in_urls() -> None:
    s = Settings(
        database_url="postgresql://app:p@ssw0rd@db/x", openai_base_url="https://u:pw9@proxy/v1"
    )
    for shown in (repr(s), str(s)):
        assert "ssw0rd" not in shown
        assert "pw9" not in shown
        assert "postgresql://app:[REDACTED]@db/x" in shown
    assert s.database_url == "postgresql://app:p@ssw0rd@db/x"  # the value itself is kept
    client = OpenAIClient(api_key="k", base_url="https://u:pw9@proxy/v1")
    assert "pw9" not in repr(client)
    assert "https://u:[REDACTED]@proxy/v1" in repr(client)


def test_seed_configuration_example() -> None:
    settings = Settings(conversation_id="c", correlation_id="corr", request_id="r", user_id="u")
    kwargs = {
        "conversation_id": settings.conversation_id,
        "correlation_id": settings.correlation_id,
        "request_id": settings.request_id,
        "user_data": settings.get_user_data(),
        "realm": settings.realm,
        "agent_title": settings.agent_title,
        "is_anonymous": settings.is_anonymous,
    }
    assert kwargs["user_data"]["user_id"] == "u"
    assert set(kwargs["user_data"]) == {"user_id", "details", "org_id"}
