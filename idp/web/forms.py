"""Reading form input into plain values, and field errors."""
from __future__ import annotations

from flask import request

MAX_FIELD = 1024
MAX_LOCAL_PATH = 2048  # LoginAttempt.next, FederationState.next_path and PendingLink.next_path hold this much


def form_value(name: str, *, max_length: int = MAX_FIELD, strip: bool = True) -> str:
    """One form field as a string, cut to max_length; never None."""
    value = request.form.get(name, "")
    if strip:
        value = value.strip()
    return value[:max_length]


def is_local_path(target: str | None) -> bool:
    """True for a path on this site ("/x"), never for "//host", "/\\host" or an absolute URL, nor
    for one longer than MAX_LOCAL_PATH (what the tables keep of a path to return to)."""
    return bool(target) and len(target) <= MAX_LOCAL_PATH and target.startswith("/") \
        and not target.startswith(("//", "/\\")) and "\\" not in target and all(ord(c) >= 0x20 for c in target)
