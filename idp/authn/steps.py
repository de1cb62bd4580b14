"""The login state machine's vocabulary and its one decision, as pure functions of values.

A login proves factors one after another; each proof carries its RFC 8176 `amr` values. What has
been proved (a list of Proof), what the person has enrolled and the level this login must reach
decide the next step: Ask for one of some factors, Enrol one (when a level is a must and the
person has no factor that reaches it), or Done with the acr/amr the proofs honestly reach.

Enrolment adds a way into the account, so it comes only after the person proved what they
already have: a login below two factors of someone with a second factor (an app or a passkey)
is asked for that factor first, never offered to set up another (which would let whoever knows
the password add their own). A step-up from an old session proves the first factor again too
(authn/flow.py, begin).

Factor names (shared with the views that prove them, e.g. authn/passkeys.py for WEBAUTHN):
  PASSWORD  the account password                       amr ["pwd"]
  TOTP      an RFC 6238 code from an app               amr ["otp"]
  RECOVERY  a single-use recovery code                 amr ["otp"] (a one-time code, RFC 8176 2)
  WEBAUTHN  a passkey / security key                   amr ["hwk", "user"] or ["swk", "user"]
            (RFC 8176 "user": user presence); two factors on its own when the authenticator
            verified the person (UV)
  FEDERATED sign-in at an upstream provider            amr ["fed"]

Levels (acr), each one including those below it:
  urn:idp:acr:pwd  one factor (a password, a federated login, a passkey without user verification)
  urn:idp:acr:mfa  two independent factors (amr contains "mfa")
  urn:idp:acr:phr  two factors, one of them WebAuthn (phishing-resistant)

How a factor's view plugs in (idp/authn/flow.py holds the server-side login in progress):
  attempt = flow.current_attempt()           # None: no login in progress in this browser
  if not flow.is_asking(attempt, WEBAUTHN):  # (flow.is_enrolling for a set-up step)
      raise PageError(...)                   # a step out of turn is refused
  ... verify the factor for attempt.user (or, passwordless, find the user) ...
  return flow.proved(attempt, user, webauthn_proof(hardware=..., user_verified=...), spent=True)
(spent=True: proving used up a one-time factor, here the challenge; see authn/flow.py.)
flow.proved records the proof, then redirects to the next step's endpoint (flow.ASK_ENDPOINTS /
ENROL_ENDPOINTS) or finishes the login (SSO session started, or raised for a step-up).
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

PASSWORD = "password"
TOTP = "totp"
RECOVERY = "recovery"
WEBAUTHN = "webauthn"
FEDERATED = "federated"

PRIMARY = (PASSWORD, WEBAUTHN)            # factors that can start a login (WEBAUTHN = passwordless)
SECOND = (WEBAUTHN, TOTP, RECOVERY, PASSWORD)  # factors that can follow one, in the order offered
ENROLLABLE = (WEBAUTHN, TOTP)             # second factors a person can set up during a login

ACR_PASSWORD = "urn:idp:acr:pwd"
ACR_MFA = "urn:idp:acr:mfa"
ACR_PHISHING_RESISTANT = "urn:idp:acr:phr"
ACR_VALUES_SUPPORTED = [ACR_PASSWORD, ACR_MFA, ACR_PHISHING_RESISTANT]  # ascending strength

AMR_PASSWORD = "pwd"
AMR_OTP = "otp"
AMR_HARDWARE_KEY = "hwk"
AMR_SOFTWARE_KEY = "swk"
AMR_USER = "user"
AMR_MFA = "mfa"
AMR_FEDERATED = "fed"


@dataclass(frozen=True)
class Proof:
    """One factor proved in this login; `factors` counts the independent factors it proves;
    `level`, for an upstream sign-in, is the level the provider's mapping gave it."""

    factor: str
    amr: tuple[str, ...]
    factors: int = 1
    level: str | None = None


def dump_proofs(proofs: Sequence[Proof]) -> list:
    """Proofs as JSON ([factor, [amr...], factors, level?] each), for a login or a session row."""
    return [[p.factor, list(p.amr), p.factors] + ([p.level] if p.level else []) for p in proofs]


def load_proofs(data: Sequence) -> list[Proof]:
    return [Proof(item[0], tuple(item[1]), item[2], item[3] if len(item) > 3 else None) for item in data]


def password_proof() -> Proof:
    return Proof(PASSWORD, (AMR_PASSWORD,))


def totp_proof() -> Proof:
    return Proof(TOTP, (AMR_OTP,))


def recovery_proof() -> Proof:
    return Proof(RECOVERY, (AMR_OTP,))


def federated_proof() -> Proof:
    return Proof(FEDERATED, (AMR_FEDERATED,))


def upstream_proof(amr: Sequence[str], acr: str) -> Proof:
    """A sign-in at an upstream provider as it ended: its amr ("fed" plus the upstream values the
    provider's mapping accepted), two factors when the mapping says it reached MFA."""
    return Proof(FEDERATED, tuple(amr), 2 if meets(acr, ACR_MFA) else 1, acr)


def webauthn_proof(*, hardware: bool, user_verified: bool) -> Proof:
    """A WebAuthn assertion: hwk for a device-bound key, swk for a synced passkey (the
    authenticator's backup-eligible flag: its word, as attestation is not asked for), and
    "user", RFC 8176's user presence test, which every assertion passes. With user verification
    (PIN or biometric on the authenticator) it is possession plus a second factor, which "mfa"
    then says (RFC 8176 has no value for "verified by the authenticator, method unknown")."""
    return Proof(WEBAUTHN, (AMR_HARDWARE_KEY if hardware else AMR_SOFTWARE_KEY, AMR_USER), 2 if user_verified else 1)


@dataclass(frozen=True)
class Ask:
    """Prove one of these factors next (in the order given)."""

    choices: tuple[str, ...]


@dataclass(frozen=True)
class Enrol:
    """Set up one of these factors now: the login must reach MFA and the person has none."""

    choices: tuple[str, ...]


@dataclass(frozen=True)
class Done:
    acr: str
    amr: tuple[str, ...]


Step = Ask | Enrol | Done


def amr_for(proofs: Sequence[Proof]) -> list[str]:
    """The amr claim: every method used, in order, plus "mfa" when two independent factors were
    proved. A one-factor upstream sign-in and the account's password are one factor together:
    most likely two passwords, the same kind of proof (the provider's mapping says when an
    upstream sign-in was more)."""
    amr: list[str] = []
    for proof in proofs:
        amr.extend(value for value in proof.amr if value not in amr)
    distinct = {proof.factor: proof.factors for proof in proofs}
    if distinct.get(FEDERATED) == 1 and PASSWORD in distinct:
        distinct[PASSWORD] = 0
    if sum(distinct.values()) >= 2:
        amr.append(AMR_MFA)
    return amr


def acr_of(proofs: Sequence[Proof]) -> str:
    """The level these proofs reach (see the module docstring). Phishing-resistant needs a passkey
    proved here, or an upstream sign-in the provider's mapping put at that level: an upstream's
    own "hwk" or "swk" in amr is its word, and its mapping may have rated it lower."""
    if AMR_MFA not in amr_for(proofs):
        return ACR_PASSWORD
    if any(p.factor == WEBAUTHN or (p.factor == FEDERATED and p.level == ACR_PHISHING_RESISTANT) for p in proofs):
        return ACR_PHISHING_RESISTANT
    return ACR_MFA


def rank(acr: str | None) -> int:
    """0 for pwd (and for anything unknown), 1 for mfa, 2 for phr."""
    return ACR_VALUES_SUPPORTED.index(acr) if acr in ACR_VALUES_SUPPORTED else 0


def meets(acr: str | None, wanted: str | None) -> bool:
    """Whether a login at `acr` satisfies a requirement of `wanted` (levels include those below)."""
    return acr is not None and rank(acr) >= rank(wanted)


def stronger(*levels: str | None) -> str:
    """The strongest of some levels (None and unknown values count as pwd)."""
    return max((level for level in levels if level in ACR_VALUES_SUPPORTED), key=rank, default=ACR_PASSWORD)


def first_supported(acr_values: Sequence[str]) -> str | None:
    """The most preferred level we know from a request's acr_values (OIDC Core 3.1.2.1: in order
    of preference, and voluntary, so unknown values are ignored)."""
    return next((value for value in acr_values if value in ACR_VALUES_SUPPORTED), None)


def next_step(proofs: Sequence[Proof], *, enrolled: Collection[str], target: str,
              required: str | None = None) -> Step:
    """What this login does next.

    proofs:   what this login has proved so far, in order (server-side state, never the client's word)
    enrolled: the factors this person has set up (PASSWORD when they have a password)
    target:   the level this login tries to reach with the factors the person has (a request's
              acr_values is voluntary: OIDC Core 3.1.2.1); at least MFA for a person who has a
              second factor
    required: the level it must reach (client or global policy, an essential acr claim): a person
              without a suitable factor is led through enrolling one, once the login has
              reached MFA with the second factor they have (if any). Below it, the login still
              ends (Done) when nothing more can be asked, and the caller refuses the result.
    """
    if not proofs:
        return Ask(PRIMARY)  # nobody is known yet: a password, or a passkey (passwordless)
    amr = amr_for(proofs)
    acr = acr_of(proofs)
    proved = {proof.factor for proof in proofs}
    # After an upstream sign-in the password is no second factor (amr_for): not worth asking.
    second = tuple(f for f in SECOND if f != PASSWORD) if FEDERATED in proved else SECOND
    if TOTP in enrolled or WEBAUTHN in enrolled:
        target = stronger(target, ACR_MFA)  # whoever set up a second factor is always asked for one
    for level in (stronger(target, required), required):
        if level is None or meets(acr, level):
            continue
        useful = (WEBAUTHN,) if rank(level) >= rank(ACR_PHISHING_RESISTANT) and WEBAUTHN not in proved else second
        choices = tuple(f for f in useful if f in enrolled and f not in proved)
        if choices:
            return Ask(choices)
        if level == required:
            if not meets(acr, ACR_MFA) and {TOTP, WEBAUTHN} & set(enrolled) - proved:
                # A second factor the person has comes before setting up another: enrolment
                # after the first factor alone would let whoever knows it add their own.
                return Ask(tuple(f for f in second if f in enrolled and f not in proved))
            can_enrol = tuple(f for f in ENROLLABLE if f in useful and f not in proved)
            if can_enrol:
                return Enrol(can_enrol)
    return Done(acr, tuple(amr))
