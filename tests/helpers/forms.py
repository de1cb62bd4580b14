"""Read a page's CSRF token and hidden fields and post them back, as a browser would."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return unescape(match.group(1))


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert match, f"page has no hidden field {name}"
    return unescape(match.group(1))


@dataclass
class Form:
    method: str
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # every <script src> of the page


class _AutoSubmitForms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[Form] = []
        self.scripts: list[str] = []
        self._open: Form | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        elif tag == "form" and "data-autosubmit" in attrs:
            self._open = Form((attrs.get("method") or "get").lower(), attrs.get("action") or "")
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attrs.get("name") and "disabled" not in attrs:
            self._open.fields.append((attrs["name"], attrs.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def auto_submit_form(html: str) -> Form:
    """The one form a page submits by script (static/js/form-post.js: form[data-autosubmit]),
    with what `form.submit()` sends: every named, enabled input in document order, values
    unescaped as a browser's HTML parser does (the submit button is not sent)."""
    parser = _AutoSubmitForms()
    parser.feed(html)
    parser.close()
    assert len(parser.forms) == 1, f"{len(parser.forms)} auto-submitting forms"
    form = parser.forms[0]
    form.scripts = parser.scripts
    return form
