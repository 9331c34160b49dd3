"""Configuration errors: one line naming the variable and the form it expects (issue #10, 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.celery_app import import_workflows
from config import Settings
from workflows.errors import ConfigurationError, UnknownWorkflowError
from workflows.workflow import require_workflow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Read only this test's variables: no ``.env`` file, no ``BATON_*`` from the shell."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("BATON_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("value", "modules"),
    [
        ("myflows.agent", ["myflows.agent"]),
        ("a,b", ["a", "b"]),
        (" a , b.c ,", ["a", "b.c"]),
        ('["a", "b"]', ["a", "b"]),
        ("", []),
    ],
)
def test_baton_imports_accepts_a_comma_separated_list_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch, value: str, modules: list[str]
) -> None:
    monkeypatch.setenv("BATON_IMPORTS", value)
    assert Settings().imports == modules


def test_imports_passed_as_a_list_in_code_still_work() -> None:
    assert Settings(imports=["x.y"]).imports == ["x.y"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "BATON_SUBMIT_TIMEOUT",
            "abc",
            "BATON_SUBMIT_TIMEOUT='abc' is invalid: expected a number > 0 (",
        ),
        ("BATON_SUBMIT_TIMEOUT", "0", "BATON_SUBMIT_TIMEOUT='0' is invalid: expected a number > 0"),
        (
            "BATON_REDIS_MAX_CONNECTIONS",
            "2",
            "BATON_REDIS_MAX_CONNECTIONS='2' is invalid: expected an integer >= 4",
        ),
        (
            "BATON_DEFAULT_MODE",
            "both",
            "BATON_DEFAULT_MODE='both' is invalid: expected one of inprocess, distributed",
        ),
        ("BATON_KEY_PREFIX", "a:b", "BATON_KEY_PREFIX='a:b' is invalid: expected text matching"),
        (
            "BATON_VISIBILITY_TIMEOUT",
            "soon",
            "BATON_VISIBILITY_TIMEOUT='soon' is invalid: expected an integer > 0",
        ),
        (
            "BATON_IMPORTS",
            "my flows",
            "BATON_IMPORTS='my flows' is invalid: expected module names, comma-separated (a,b) "
            "or a JSON list (not a module name: 'my flows')",
        ),
        ("BATON_IMPORTS", '["a",', "BATON_IMPORTS='[\"a\",' is invalid: expected module names"),
        ("BATON_VISIBILITY_TIMEOUT", "60", "BATON_VISIBILITY_TIMEOUT (60) must exceed"),
    ],
)
def test_an_invalid_setting_is_one_line_naming_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        Settings()
    assert info.value.message.startswith(message)
    assert "\n" not in info.value.message


def test_every_invalid_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_SUBMIT_TIMEOUT", "abc")
    monkeypatch.setenv("BATON_FLOWER_PORT", "x")
    with pytest.raises(ConfigurationError) as info:
        Settings()
    assert "BATON_SUBMIT_TIMEOUT='abc'" in info.value.message
    assert "; BATON_FLOWER_PORT='x' is invalid: expected an integer" in info.value.message


def test_an_invalid_redis_url_is_named_without_echoing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_REDIS_URL", "http://:s3cret@host:6379/0")
    with pytest.raises(ConfigurationError) as info:
        Settings()
    assert info.value.message == (
        "BATON_REDIS_URL is invalid: expected a redis://, rediss://, unix:// or redis+cluster:// "
        "URL (scheme 'http')"
    )


def test_a_module_that_cannot_be_imported_names_module_variable_and_cause() -> None:
    with pytest.raises(ConfigurationError) as info:
        import_workflows(Settings(imports=["no_such_module_for_baton"]))
    assert info.value.message == (
        "BATON_IMPORTS names 'no_such_module_for_baton', which cannot be imported: "
        "No module named 'no_such_module_for_baton'"
    )


def test_an_unknown_workflow_hints_at_baton_imports_and_the_submitting_process() -> None:
    with pytest.raises(UnknownWorkflowError) as info:
        require_workflow("NoSuchFlow")
    assert info.value.message.startswith("no workflow named 'NoSuchFlow' (registered: ")
    assert info.value.message.endswith(
        "; the module defining it must be in BATON_IMPORTS (for workers) and imported by the "
        "submitting process"
    )


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "BATON_SUBMIT_TIMEOUT",
            "abc",
            "error: BATON_SUBMIT_TIMEOUT='abc' is invalid: expected a number > 0 (Input should "
            "be a valid number, unable to parse string as a number)",
        ),
        (
            "BATON_IMPORTS",
            "no_such_module_for_baton",
            "error: BATON_IMPORTS names 'no_such_module_for_baton', which cannot be imported: "
            "No module named 'no_such_module_for_baton'",
        ),
    ],
)
@pytest.mark.parametrize("command", [["check"], ["worker", "-Q", "baton"]])
def test_the_cli_prints_a_configuration_error_as_one_line_and_exits_1(
    tmp_path: Path, variable: str, value: str, line: str, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env |= {variable: value, "PYTHONPATH": str(ROOT), "COLUMNS": "300"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == line
    assert done.stdout == ""
