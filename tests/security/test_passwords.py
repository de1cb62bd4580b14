"""argon2id hashing and the NIST SP 800-63B acceptance rules (idp.security.passwords)."""
import pytest
from argon2 import Type, extract_parameters

from idp.config import Settings
from idp.security import passwords

DEFAULTS = Settings()


@pytest.fixture(scope="module")
def hasher():
    return passwords.make_hasher(DEFAULTS.argon2_memory_kib, DEFAULTS.argon2_time_cost, DEFAULTS.argon2_parallelism)


def check(password, context=()):
    passwords.check_password_rules(password, min_length=DEFAULTS.password_min_length,
                                   max_length=DEFAULTS.password_max_length, context=context)


def rejection(password, context=()) -> str:
    with pytest.raises(passwords.PasswordRejected) as caught:
        check(password, context)
    return str(caught.value)


def test_default_hash_is_argon2id_at_owasp_minimum_parameters(hasher):
    stored = passwords.hash_password(hasher, "correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    params = extract_parameters(stored)
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (Type.ID, 19456, 2, 1)


def test_hash_is_salted_so_equal_passwords_hash_differently(hasher):
    assert passwords.hash_password(hasher, "same password here") != passwords.hash_password(hasher, "same password here")


def test_verify_accepts_the_password_and_refuses_anything_else(hasher):
    stored = passwords.hash_password(hasher, "correct horse battery staple")
    assert passwords.verify_password(hasher, stored, "correct horse battery staple") is True
    assert passwords.verify_password(hasher, stored, "Correct horse battery staple") is False
    assert passwords.verify_password(hasher, stored, "") is False


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$m=19456,t=2,p=1$broken"])
def test_verify_of_missing_or_malformed_hash_is_false_not_an_error(hasher, stored):
    assert passwords.verify_password(hasher, stored, "anything at all") is False


def test_needs_rehash_when_parameters_change(hasher):
    stored = passwords.hash_password(hasher, "correct horse battery staple")
    assert passwords.needs_rehash(hasher, stored) is False
    stronger = passwords.make_hasher(19456, 3, 1)
    assert passwords.needs_rehash(stronger, stored) is True
    assert "t=3" in passwords.hash_password(stronger, "correct horse battery staple")


def test_minimum_length_is_eight_characters():
    assert rejection("seven77") == "Use at least 8 characters."
    check("q7vmx2lp")


@pytest.mark.parametrize("length", [64, 200, DEFAULTS.password_max_length])
def test_long_passphrases_are_allowed(hasher, length):
    passphrase = ("the quick brown fox jumps over a lazy dog " * 10)[:length]
    assert len(passphrase) == length
    check(passphrase)
    assert passwords.verify_password(hasher, passwords.hash_password(hasher, passphrase), passphrase)


def test_beyond_the_maximum_length_is_refused():
    assert rejection("x" * (DEFAULTS.password_max_length + 1)) == f"Use at most {DEFAULTS.password_max_length} characters."


@pytest.mark.parametrize("password", ["aaaaaaaaaaaaaaaa", "alllowercaseletters", "12345678901234567890x",
                                      "ALL CAPS PASSPHRASE", "日本語のパスワードです"])
def test_no_composition_rules(password):
    check(password)


def test_breached_list_is_large_and_loaded_once():
    first = passwords.breached_passwords()
    assert len(first) >= 10_000
    assert passwords.breached_passwords() is first
    assert all(p == p.lower() for p in first)


@pytest.mark.parametrize("password", ["password1", "PASSWORD1", "Qwerty123", "qwerty123", "iloveyou", "Iloveyou"])
def test_breached_passwords_are_refused_case_insensitively(password):
    assert rejection(password) == "This password appears in lists of leaked passwords. Choose another."


@pytest.mark.parametrize("password", ["alice-wonder", "ALICE-WONDER", "alice@example.com", "ALICE@EXAMPLE.COM"])
def test_password_equal_to_username_or_email_is_refused(password):
    assert rejection(password, context=("alice-wonder", "alice@example.com", "alice")) == \
        "Do not use your username or email as your password."


def test_password_merely_containing_the_username_is_allowed():
    check("alice-wonder in the garden", context=("alice-wonder", "alice@example.com", "alice"))
