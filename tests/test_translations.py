"""The German catalogue: complete, consistent with the sources, compiled, and in use.

Regenerate it after changing a user-facing string (from the package directory)::

    cd django_lexoffice
    DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. django-admin makemessages -l de \\
        --ignore "testing/*" --ignore "templates/django_lexoffice/fake/*"
    msgfmt --check -o locale/de/LC_MESSAGES/django.mo locale/de/LC_MESSAGES/django.po
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polib
import pytest
from django.utils import translation

import django_lexoffice
from django_lexoffice.models import LexofficeConnection

PACKAGE_DIR = Path(django_lexoffice.__file__).resolve().parent
LC_MESSAGES = PACKAGE_DIR / "locale" / "de" / "LC_MESSAGES"
PO_PATH = LC_MESSAGES / "django.po"
MO_PATH = LC_MESSAGES / "django.mo"

#: The fake Lexware (``testing``) imitates Lexware's own pages; it is not translated.
MAKEMESSAGES_IGNORES = ("testing/*", "templates/django_lexoffice/fake/*")

#: printf-style placeholders as Python's ``%`` operator reads them.
PYTHON_FORMAT = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?"  # mapping key
    r"[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?"  # flags, width, precision
    r"(?P<conversion>[diouxXeEfFgGcrsa%])"
)
BRACE_FORMAT = re.compile(r"\{\s*([A-Za-z_][\w.]*)?\s*\}")
HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
#: Informal address; the catalogue says "Sie".
INFORMAL = re.compile(r"\b(du|dich|dir|dein|deine|deinen|deinem|deiner|deines)\b", re.IGNORECASE)


def _key(entry: polib.POEntry | polib.MOEntry) -> tuple[str | None, str, str | None]:
    return (entry.msgctxt or None, entry.msgid, entry.msgid_plural or None)


def _label(entry: polib.POEntry) -> str:
    return f"{entry.msgid!r} ({', '.join(o[0] + ':' + o[1] for o in entry.occurrences)})"


def _translations(entry: polib.POEntry) -> list[tuple[str, str]]:
    """(source, translation) pairs: form 0 against msgid, the other forms against msgid_plural."""
    if entry.msgid_plural:
        return [
            (entry.msgid if index == 0 else entry.msgid_plural, text)
            for index, text in sorted(entry.msgstr_plural.items())
        ]
    return [(entry.msgid, entry.msgstr)]


def _python_placeholders(text: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for match in PYTHON_FORMAT.finditer(text):
        if match["conversion"] == "%":
            continue
        found[
            f"%({match['name']}){match['conversion']}"
            if match["name"] is not None
            else f"%{match['conversion']}"
        ] += 1
    return found


def _brace_placeholders(text: str) -> Counter[str]:
    return Counter(match[1] or "" for match in BRACE_FORMAT.finditer(text))


@pytest.fixture(scope="module")
def po() -> polib.POFile:
    return polib.pofile(str(PO_PATH), wrapwidth=0)


@pytest.fixture(scope="module")
def entries(po: polib.POFile) -> list[polib.POEntry]:
    return [entry for entry in po if not entry.obsolete]


# -- the .po itself ------------------------------------------------------------------------


def test_header(po: polib.POFile) -> None:
    assert not po.metadata_is_fuzzy, "the header is still marked fuzzy"
    assert po.metadata["Language"] == "de"
    assert po.metadata["Content-Type"] == "text/plain; charset=UTF-8"
    assert po.metadata["Plural-Forms"] == "nplurals=2; plural=(n != 1);"
    assert po.encoding.lower() == "utf-8"


def test_every_entry_is_translated_and_none_is_fuzzy_or_obsolete(
    po: polib.POFile, entries: list[polib.POEntry]
) -> None:
    assert entries, "the catalogue is empty"
    fuzzy = [_label(entry) for entry in entries if "fuzzy" in entry.flags]
    obsolete = [entry.msgid for entry in po.obsolete_entries()]
    untranslated = []
    for entry in entries:
        if entry.msgid_plural:
            forms = entry.msgstr_plural
            if sorted(forms) != [0, 1] or not all(text.strip() for text in forms.values()):
                untranslated.append(_label(entry))
        elif not entry.msgstr.strip():
            untranslated.append(_label(entry))
    assert not fuzzy, f"fuzzy entries: {fuzzy}"
    assert not obsolete, f"obsolete entries (#~), remove them: {obsolete}"
    assert not untranslated, f"untranslated entries: {untranslated}"


def test_placeholders_match(entries: list[polib.POEntry]) -> None:
    problems = []
    for entry in entries:
        python_format = "python-format" in entry.flags
        for source, text in _translations(entry):
            if python_format:
                if _python_placeholders(source) != _python_placeholders(text):
                    problems.append(f"{_label(entry)}: %-placeholders differ in {text!r}")
            elif "%(" in text:
                problems.append(f"{_label(entry)}: not python-format, but {text!r} has one")
            if _brace_placeholders(source) != _brace_placeholders(text):
                problems.append(f"{_label(entry)}: brace placeholders differ in {text!r}")
            if sorted(HTML_TAG.findall(source)) != sorted(HTML_TAG.findall(text)):
                problems.append(f"{_label(entry)}: HTML tags differ in {text!r}")
    assert not problems, "\n".join(problems)


def test_python_format_translations_format(entries: list[polib.POEntry]) -> None:
    """Every python-format translation formats with the source's own arguments."""
    for entry in entries:
        if "python-format" not in entry.flags:
            continue
        for source, text in _translations(entry):
            names = {m["name"] for m in PYTHON_FORMAT.finditer(source) if m["name"]}
            if names:
                arguments = {name: 1 for name in names}
                assert isinstance(source % arguments, str)
                assert isinstance(text % arguments, str), f"{text!r} does not format"


def test_german_style(entries: list[polib.POEntry]) -> None:
    """Formal address, the product's own spelling and German quotation marks."""
    problems = []
    for entry in entries:
        for _source, text in _translations(entry):
            prose = HTML_TAG.sub("", text)
            if INFORMAL.search(prose):
                problems.append(f"{_label(entry)}: informal address in {text!r}")
            if re.search(r"Lexoffice|LexOffice|LEXOFFICE(?!_)", prose):
                problems.append(f"{_label(entry)}: write 'lexoffice' in lower case: {text!r}")
            if '"' in prose or "”" in prose or prose.count("„") != prose.count("“"):
                problems.append(f"{_label(entry)}: use German quotation marks „…“ in {text!r}")
    assert not problems, "\n".join(problems)


# -- the compiled .mo ----------------------------------------------------------------------


def test_mo_is_compiled_from_the_current_po(entries: list[polib.POEntry]) -> None:
    assert MO_PATH.is_file(), f"{MO_PATH} is missing; run msgfmt or compilemessages"
    mo = polib.mofile(str(MO_PATH))

    def translations(catalogue: list) -> dict:
        return {
            _key(entry): (
                tuple(sorted(entry.msgstr_plural.items())) if entry.msgid_plural else entry.msgstr
            )
            for entry in catalogue
            if entry.msgid and "fuzzy" not in entry.flags
        }

    expected = translations(entries)
    compiled = translations(list(mo))
    stale = {
        key: (compiled.get(key), value)
        for key, value in expected.items()
        if compiled.get(key) != value
    }
    extra = sorted(str(key) for key in set(compiled) - set(expected))
    hint = "recompile: msgfmt --check -o django.mo django.po"
    assert not stale, f"{MO_PATH.name} is out of date ({hint}); differing: {stale}"
    assert not extra, f"{MO_PATH.name} has entries the .po lacks ({hint}): {extra}"
    assert mo.metadata.get("Plural-Forms") == "nplurals=2; plural=(n != 1);"


# -- complete: nothing extracted from the sources is missing ---------------------------------


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> polib.POFile:
    """A fresh ``makemessages -l de`` over a copy of the package's current sources."""
    if shutil.which("xgettext") is None:
        pytest.skip("GNU gettext's xgettext is not installed; cannot extract messages")
    copy = tmp_path_factory.mktemp("makemessages") / "django_lexoffice"
    shutil.copytree(
        PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.po", "*.mo")
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    command = [sys.executable, "-P", "-m", "django", "makemessages", "-l", "de"]
    for pattern in MAKEMESSAGES_IGNORES:
        command += ["--ignore", pattern]
    # -P: the package directory holds http.py, signals.py...; they must not shadow anything.
    result = subprocess.run(
        command, cwd=copy, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"makemessages failed:\n{result.stdout}\n{result.stderr}"
    return polib.pofile(str(copy / "locale" / "de" / "LC_MESSAGES" / "django.po"), wrapwidth=0)


def test_every_extracted_message_is_in_the_catalogue(
    extracted: polib.POFile, entries: list[polib.POEntry]
) -> None:
    committed = {_key(entry) for entry in entries}
    missing = [_label(entry) for entry in extracted if entry.msgid and _key(entry) not in committed]
    assert not missing, (
        "strings marked for translation but missing from the German catalogue; re-run "
        f"makemessages (see this module's docstring) and translate them: {missing}"
    )


def test_catalogue_has_no_stale_entries(
    extracted: polib.POFile, entries: list[polib.POEntry]
) -> None:
    current = {_key(entry) for entry in extracted if entry.msgid}
    stale = [_label(entry) for entry in entries if _key(entry) not in current]
    assert not stale, f"entries no longer in the sources; re-run makemessages: {stale}"


# -- in use ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_is_german(client) -> None:
    with translation.override("de"):
        response = client.get("/lexoffice/login/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 200
    content = response.content.decode()
    assert '<html lang="de">' in content
    assert "Mit lexoffice verbinden" in content
    assert "Ihr lexoffice-Passwort wird niemals an diese Website weitergegeben." in content
    assert "Connect with lexoffice" not in content


@pytest.mark.django_db
def test_login_page_stays_english_for_english_browsers(client) -> None:
    with translation.override("en"):  # LocaleMiddleware activates; restore afterwards
        response = client.get("/lexoffice/login/", HTTP_ACCEPT_LANGUAGE="en")
    assert "Connect with lexoffice" in response.content.decode()


def test_model_texts_are_german() -> None:
    with translation.override("de"):
        assert str(LexofficeConnection.Status.ACTIVE.label) == "Aktiv"
        assert (
            str(LexofficeConnection.Status.REAUTHORIZATION_REQUIRED.label)
            == "Erneute Autorisierung erforderlich"
        )
        # The admin capitalizes model names: "lexoffice" goes where it stays lower case.
        assert str(LexofficeConnection._meta.verbose_name) == "Verbindung zu lexoffice"
        assert str(LexofficeConnection._meta.verbose_name_plural) == "Verbindungen zu lexoffice"
        assert str(LexofficeConnection._meta.get_field("organization_id").verbose_name) == (
            "Organisations-ID"
        )
    assert str(LexofficeConnection.Status.ACTIVE.label) == "Active"


def test_plural_forms_are_used() -> None:
    from django_lexoffice.admin_actions import REFRESH_OUTCOMES

    summary = REFRESH_OUTCOMES["refreshed"].summary
    with translation.override("de"):
        assert summary % {"count": 1} == "1 Verbindung aktualisiert."
        assert summary % {"count": 2} == "2 Verbindungen aktualisiert."
        assert summary % {"count": 0} == "0 Verbindungen aktualisiert."
