"""The one fake: a counter around argon2-cffi's PasswordHasher (a library we don't own).

It proves by behaviour, not by timing, that every path of a form does the same argon2 work.
"""
from __future__ import annotations

from contextlib import contextmanager


class CountingHasher:
    def __init__(self, inner):
        self.inner = inner
        self.hashes = 0
        self.verifies = 0

    def hash(self, *args, **kwargs):
        self.hashes += 1
        return self.inner.hash(*args, **kwargs)

    def verify(self, *args, **kwargs):
        self.verifies += 1
        return self.inner.verify(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@contextmanager
def counting_hasher(app):
    """Put a CountingHasher in app.extensions["idp.hasher"] for the duration of the block."""
    from idp.users.directory import hasher

    with app.app_context():
        original = hasher()
    counter = CountingHasher(original)
    app.extensions["idp.hasher"] = counter
    try:
        yield counter
    finally:
        app.extensions["idp.hasher"] = original
