"""error_description text that is safe to send: RFC 6749 4.1.2.1 and 5.2 allow only
%x20-21 / %x23-5B / %x5D-7E (printable ASCII but `"` and `\\`), and authlib raises a ValueError (a
500) for anything else. Use it wherever a description quotes something a client sent."""
from __future__ import annotations

ALLOWED = frozenset(chr(c) for c in (0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)))


def safe(text: str, limit: int = 200) -> str:
    """`text` with every character RFC 6749 does not allow in error_description replaced by `?`,
    and cut to `limit` characters."""
    return "".join(c if c in ALLOWED else "?" for c in str(text)[:limit])
