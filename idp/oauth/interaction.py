"""What the authorization endpoint does next; a pure function of values."""
from __future__ import annotations

from dataclasses import dataclass

from idp.authn.steps import meets


@dataclass(frozen=True)
class Login:
    reason: str


@dataclass(frozen=True)
class StepUp:
    """Prove more factors in this SSO session to reach `acr` (`required` must be met)."""

    acr: str
    required: str | None


@dataclass(frozen=True)
class Unmet:
    """A required level was not reached by the login made for it (OIDC Core 5.5.1.1)."""


@dataclass(frozen=True)
class Consent:
    pass


@dataclass(frozen=True)
class Issue:
    pass


Step = Login | StepUp | Unmet | Consent | Issue


def next_step(*, prompts: set[str], signed_in: bool, login_is_fresh: bool, session_age: int | None,
              max_age: int | None, hint_matches: bool, consent_covers: bool, first_party: bool,
              session_acr: str | None = None, target: str | None = None, required: str | None = None,
              stepped_up: bool = False) -> Step:
    """Login when nobody is signed in, the login is too old for max_age, prompt asks for it
    (and it has not just happened), or id_token_hint names someone else; StepUp when the session
    is below the level asked for (target: voluntary, required: a must) and no login was made for
    this request yet; Unmet when one was and the required level is still not met; then Consent
    unless remembered or first-party (prompt=consent always asks); then Issue. prompt=create asks
    for a new account first (reason "create"), unless one was just made or signed into."""
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
    tried = login_is_fresh or stepped_up
    short_of_required = required is not None and not meets(session_acr, required)
    if short_of_required and tried:
        return Unmet()
    if (short_of_required or (target is not None and not meets(session_acr, target))) and not tried:
        return StepUp(target or required, required)
    if "consent" in prompts or not (consent_covers or first_party):
        return Consent()
    return Issue()
