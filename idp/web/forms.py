"""Reading form input into plain values, and field errors."""
from __future__ import annotations

from flask import request

MAX_FIELD = 1024


def form_value(name: str, *, max_length: int = MAX_FIELD, strip: bool = True) -> str:
    """One form field as a string, cut to max_length; never None."""
    value = request.form.get(name, "")
    if strip:
        value = value.strip()
    return value[:max_length]


def is_local_path(target: str | None) -> bool:
    """True for a path on this site ("/x"), never for "//host", "/\\host" or an absolute URL."""
    return bool(target) and target.startswith("/") and not target.startswith(("//", "/\\")) \
        and "\\" not in target and all(ord(c) >= 0x20 for c in target)
