"""Chinese first, English second: both catalogs cover every string in the code and are compiled."""


from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
METHODS = [("kiosk/**.py", "python"), ("templates/**.html", "jinja2")]


def code_msgids() -> set[str]:
    ids = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(str(ROOT), METHODS, keywords=KEYWORDS):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_catalog_is_complete_and_compiled(locale):
    folder = ROOT / "kiosk" / "translations" / locale / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as f:
        po = read_po(f, locale=locale)
    translated = {m.id for m in po if m.id and m.string and not m.fuzzy}
    missing = code_msgids() - translated
    assert not missing, f"{locale} lacks: {sorted(missing)[:10]}"
    with open(folder / "messages.mo", "rb") as f:
        mo = read_mo(f)
    compiled = {m.id: m.string for m in mo if m.id}
    stale = [m.id for m in po if m.id and m.string and not m.fuzzy and compiled.get(m.id) != m.string]
    assert not stale, f"{locale} messages.mo is older than messages.po: run pybabel compile"


def test_placeholders_survive_translation():
    with open(ROOT / "kiosk/translations/en/LC_MESSAGES/messages.po", "rb") as f:
        po = read_po(f)
    import re

    for m in po:
        if m.id and m.string:
            assert sorted(re.findall(r"%\(\w+\)\w", m.id)) == sorted(re.findall(r"%\(\w+\)\w", m.string)), m.id


def test_english_pages(client, make_event):
    make_event(title="写春联")
    client.set_cookie("lang", "en")
    html = client.get("/").get_data(as_text=True)
    assert "Today" in html and "今天的活动" not in html
    assert "Log in" in client.get("/manage/login").get_data(as_text=True)

