"""Random values, storage digests and constant-time comparison (idp.security.tokens)."""
import hashlib

from idp.security.tokens import constant_time_equal, digest, random_token


def test_random_tokens_are_url_safe_unique_and_long_enough():
    values = {random_token(32) for _ in range(200)}
    assert len(values) == 200
    assert all(len(v) >= 43 and set(v) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
               for v in values)


def test_digest_is_sha256_hex_of_the_utf8_value():
    assert digest("ﬁle") == hashlib.sha256("ﬁle".encode()).hexdigest()
    assert len(digest("x")) == 64


def test_constant_time_equal():
    assert constant_time_equal("abc", "abc") is True
    assert constant_time_equal("abc", "abd") is False
    assert constant_time_equal("abc", "abcd") is False
    assert constant_time_equal("é", "é") is True
