"""Flower never runs with a well-known password: the setting has no default, ``baton up``'s
stack makes a random one (and prints it), and compose refuses to start without one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from app.stack import LocalStack
from config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def no_flower_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings as on a fresh machine: no BATON_FLOWER_PASSWORD, no .env file."""
    monkeypatch.delenv("BATON_FLOWER_PASSWORD", raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_flower_password_setting_has_no_default(no_flower_env: None) -> None:
    assert Settings().flower_password is None


@pytest.mark.parametrize(
    "configured",
    [None, "", "change-me"],
    ids=["unset", "empty (as in deploy/.env.example)", "the old well-known default"],
)
def test_the_local_stack_makes_a_random_flower_password_unless_one_is_set(
    no_flower_env: None, configured: str | None
) -> None:
    password = None if configured is None else SecretStr(configured)
    settings = Settings(flower_password=password)
    first, second = LocalStack(settings), LocalStack(settings)
    assert first.flower_password_generated and second.flower_password_generated
    assert len(first.flower_password) >= 16
    assert first.flower_password != second.flower_password  # random, not fixed


def test_the_local_stack_uses_a_password_that_is_set(no_flower_env: None) -> None:
    stack = LocalStack(Settings(flower_password=SecretStr("s3cret-of-mine")))
    assert (stack.flower_password, stack.flower_password_generated) == ("s3cret-of-mine", False)


def test_an_empty_flower_password_in_a_dotenv_file_is_not_used(
    no_flower_env: None, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("BATON_FLOWER_PASSWORD=\n")
    stack = LocalStack(Settings())
    assert stack.flower_password_generated and stack.flower_password
