"""The README says what the code and the tooling do: its API example runs as written, and its
"Development" section leads with the command CI runs, which never skips an interpreter."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

REPO_DIR = Path(__file__).resolve().parent.parent
README = (REPO_DIR / "README.rst").read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    """The body of an RST section (up to the next heading of any level)."""
    start = text.index(f"\n{title}\n") + len(title) + 2
    body = text[start:].split("\n", 1)[1]  # drop the underline
    next_heading = re.search(r"\n[^\n]+\n[=\-~]{3,}\n", body)
    return body[: next_heading.start()] if next_heading else body


def code_blocks(text: str) -> list[str]:
    """The ``.. code-block::`` bodies of an RST text, dedented."""
    blocks = []
    for match in re.finditer(r"\.\. code-block:: \w+\n\n((?:    .*\n|\n)+)", text):
        lines = match.group(1).rstrip("\n").splitlines()
        blocks.append("\n".join(line[4:] for line in lines) + "\n")
    return blocks


# -- the API example ----------------------------------------------------------------------------


def api_example() -> Any:
    """``contacts(request)`` from the README, exactly as written."""
    (code,) = code_blocks(section(README, "Calling the API"))
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.rst: Calling the API", "exec"), namespace)
    return namespace["contacts"]


def test_readme_and_docs_show_the_same_api_example():
    docs = (REPO_DIR / "docs" / "client.rst").read_text(encoding="utf-8")
    assert code_blocks(docs)[0] == code_blocks(section(README, "Calling the API"))[0]


def request_for(user: Any) -> Any:
    request = RequestFactory().get("/contacts/")
    request.user = user
    return request


@pytest.mark.django_db
def test_api_example_sends_a_user_without_connection_to_login(user):
    response = api_example()(request_for(user))
    assert response.status_code == 302 and response["Location"] == "/lexoffice/login/"


def test_api_example_sends_an_anonymous_user_to_login():
    response = api_example()(request_for(AnonymousUser()))
    assert response["Location"] == "/lexoffice/login/"


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["revoked", "reauthorization_required"])
def test_api_example_sends_a_dead_connection_to_login(user, make_connection, status):
    make_connection(status=status)
    response = api_example()(request_for(user))
    assert response["Location"] == "/lexoffice/login/"


@pytest.mark.django_db
def test_api_example_asks_which_company_when_there_are_several(user, make_connection):
    make_connection(organization_id="first")
    make_connection(organization_id="second")
    response = api_example()(request_for(user))
    assert response["Location"] == "/lexoffice/connections/"


@pytest.mark.django_db
def test_api_example_reads_the_contacts(user, make_connection, fake_lexware, settings):
    tokens = fake_lexware.issue_tokens(settings.SOCIAL_AUTH_LEXOFFICE_KEY)
    make_connection(access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    assert api_example()(request_for(user)) is None  # the example's "..." returns nothing
    assert fake_lexware.count("api") >= 1


# -- Development ---------------------------------------------------------------------------------


def test_development_section_leads_with_the_command_ci_runs():
    development = section(README, "Development")
    first = code_blocks(development)[0]
    assert first.strip() == "$ bash .ci/run"
    for needed in ("PostgreSQL", "Redis", "Chromium", "root"):
        assert needed in development.split(".. code-block::")[1], needed  # right after it
    ci_run = (REPO_DIR / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^python -m tox -m ci$", ci_run, re.MULTILINE)


def tox_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO_DIR / "tox.ini", encoding="utf-8")
    return config


def test_tox_never_skips_a_missing_interpreter():
    config = tox_config()
    for name in config.sections():
        value = config[name].get("skip_missing_interpreters", "false")
        assert value.strip().lower() == "false", f"[{name}] skip_missing_interpreters = {value}"
    assert "--skip-missing-interpreters" not in (REPO_DIR / ".ci" / "run").read_text("utf-8")


def test_ci_runs_the_browser_suite_exactly_once():
    config = tox_config()
    ci = [env.strip() for env in config["tox"]["labels"].split("=", 1)[1].split(",")]
    assert "browser" in ci
    assert '-m "not browser"' in config["testenv"]["commands"]
    assert "-m browser" in config["testenv:browser"]["commands"]
    # ... and there a missing Chromium fails instead of skipping (tests/conftest.py).
    assert "LEXOFFICE_TEST_BROWSER = required" in config["testenv:browser"]["set_env"]
    for name in config.sections():
        if name.startswith("testenv:") and name != "testenv:browser":
            assert "-m browser" not in config[name].get("commands", "")
