"""What the authorization endpoint does next; a pure function of values."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Login:
    reason: str


@dataclass(frozen=True)
class Consent:
    pass


@dataclass(frozen=True)
class Issue:
    pass


Step = Login | Consent | Issue


def next_step(*, prompts: set[str], signed_in: bool, login_is_fresh: bool, session_age: int | None,
              max_age: int | None, hint_matches: bool, consent_covers: bool, first_party: bool) -> Step:
    """Login when nobody is signed in, the login is too old for max_age, prompt asks for it
    (and it has not just happened), or id_token_hint names someone else; then Consent unless
    remembered or first-party (prompt=consent always asks); then Issue. prompt=create asks for
    a new account first (reason "create"), unless one was just made or signed into."""
    if "create" in prompts and not login_is_fresh:
        return Login("create")
    if not signed_in:
        return Login("no_session")
    if not hint_matches:
        return Login("id_token_hint")
    if not login_is_fresh:
        if prompts & {"login", "select_account"}:
            return Login("prompt")
        # OIDC Core 3.1.2.1: max_age=0 is equivalent to prompt=login (an age in whole seconds is 0 at first).
        if max_age is not None and session_age is not None and (max_age == 0 or session_age > max_age):
            return Login("max_age")
    if "consent" in prompts or not (consent_covers or first_party):
        return Consent()
    return Issue()
