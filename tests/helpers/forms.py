"""Read a page's CSRF token and hidden fields and post them back, as a browser would."""
from __future__ import annotations

import re
from html import unescape


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return unescape(match.group(1))


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert match, f"page has no hidden field {name}"
    return unescape(match.group(1))
