"""The login in progress: a LoginAttempt row (what this login proved, what it must reach, where
it returns) found through a random value in the Flask session. Each factor's view asks
`is_asking` before it checks anything, records success with `proved`, and the state machine in
steps.next_step picks the next page, so no step can be skipped by calling a later URL.

Several requests from one browser can work on the same login at once (a double click, two tabs).
So the row is never read, changed in Python and written back: each change is one conditional
statement whose row count says whether the login still exists (a wrong code is counted with
UPDATE ... SET failures = failures + 1, the end of a login is claimed with a DELETE that only one
request can win). A request that finds the login gone raises LoginGone, and the view answers with
the sign-in page again instead of an error.

That answer rolls back what the request did, so what must outlive the login is committed before
the login is changed: a wrong code's count (the views), and a one-time factor that proving spent
(a TOTP time step, a recovery code, a WebAuthn challenge: `proved(..., spent=True)`), which a
racing request ending the login must never give back (RFC 6238 5.2: the same OTP is not accepted
twice). Setting a factor up during a login stays one unit with it: a LoginGone there undoes the
set-up, which proved nothing yet (the app's secret stays pending, the passkey is not added).

A step-up (begin(step_up=True)) starts from what the signed-in session proved, so only the
missing factor is asked; a step-up that would lead to setting up a factor from a session signed
in longer ago than IDP_MFA_RECENT_AUTH_SECONDS starts from the first factor instead, for the same
person (steps.next_step then asks for the second factor they have before any set-up)."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app, redirect, render_template, session, url_for
from sqlalchemy import delete, update
from sqlalchemy.orm.attributes import set_committed_value

from idp import audit
from idp.authn import session as sso
from idp.authn import steps
from idp.authn.errors import LoginGone
from idp.authn.factors import enrolled_factors, has_second_factor
from idp.clock import now, timestamp
from idp.extensions import commit_keeping_loaded, db
from idp.models import LoginAttempt, User
from idp.models.batches import delete_in_batches
from idp.security.tokens import digest, random_token
from idp.users import terms
from idp.web.errors import PageError
from idp.web.headers import keep_forms_on_origin
from idp.web.templating import N_
from idp.web.templating import gettext as _

TTL = timedelta(minutes=10)
MAX_FAILURES = 5  # wrong second-factor codes before the login starts again from the password
SESSION_KEY = "login"
ASK_ENDPOINTS = {steps.PASSWORD: "authn.login", steps.TOTP: "authn.totp", steps.RECOVERY: "authn.recovery",
                 steps.WEBAUTHN: "authn.passkey"}
ENROL_ENDPOINTS = {steps.TOTP: "authn.totp_enrol", steps.WEBAUTHN: "authn.passkey_enrol"}


BELOW_SESSION = N_("This sign-in did not reach the level of your current one. Sign in again with the "
                   "passkey or authenticator app you used before.")


class WrongUser(Exception):
    """A factor was proved for someone other than the person this login is about."""


VERIFY_USER_KEY = "idp_verify_user"  # who may ask for another verification mail before signing in
VERIFY_AT_KEY = "idp_verify_at"      # when they proved it (clock.timestamp()): see unverified_user_id


def remember_unverified(user: User) -> None:
    """This browser just proved a way into `user`'s account (a sign-in, or creating it), but the
    account may not sign in before its address is verified: remember who, and when, so that this
    browser may ask for another link and, for a short while, use one (authn.link_proof)."""
    session[VERIFY_USER_KEY] = user.id
    session[VERIFY_AT_KEY] = timestamp()


def unverified_user_id(within: timedelta | None = None) -> int | None:
    """The account this browser proved its way into without getting a session (remember_unverified);
    with `within`, only if that was at most that long ago (a browser session cookie may live for
    days, a proof of who sits at the browser does not)."""
    user_id = session.get(VERIFY_USER_KEY)
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        return None
    if within is not None:
        at = session.get(VERIFY_AT_KEY)
        if not isinstance(at, int) or not 0 <= timestamp() - at <= within.total_seconds():
            return None
    return user_id


def begin(next_path: str, *, acr: str | None = None, required: str | None = None,
          step_up: bool = False) -> LoginAttempt:
    """Start a login in this browser (replacing any other); the caller commits.

    acr is the level to try for, required the level that must be met (IDP_MFA_REQUIRED adds
    urn:idp:acr:mfa to both). With step_up, a signed-in person below the level keeps what the
    session proved and is asked only for more; but when that would lead to setting up a factor
    and the session's sign-in is older than IDP_MFA_RECENT_AUTH_SECONDS, the login starts from
    the first factor (for the same person, still raising this session): a new way into the
    account is never added on the word of an old sign-in (the account pages ask the same)."""
    settings = current_app.config["IDP_SETTINGS"]
    required = required if required in steps.ACR_VALUES_SUPPORTED else None
    if settings.mfa_required:
        required = steps.stronger(required, steps.ACR_MFA)
    target = steps.stronger(acr, required)
    drop(current_attempt())  # expired ones are unusable (current_attempt) and `idp purge` deletes them
    raw = random_token(32)
    row = LoginAttempt(token_digest=digest(raw), proofs=[], target=target, must=required is not None,
                       step_up=False, next=next_path, failures=0, created_at=now(), expires_at=now() + TTL)
    current = sso.current_session()
    if step_up and current is not None and not steps.meets(current.acr, target):
        row.user, row.step_up = current.user, True
        carried = steps.load_proofs(current.proofs or [])  # none for a session from before 0008
        if not sso.signed_in_lately(current) and isinstance(
                steps.next_step(carried, enrolled=enrolled_factors(current.user), target=target,
                                required=target if required is not None else None),
                steps.Enrol):
            carried = []  # setting up a factor needs fresh proofs, not an old sign-in's: from the first factor
        row.proofs = steps.dump_proofs(carried)
    db.session.add(row)
    db.session.flush()
    session[SESSION_KEY] = raw
    return row


def purge_expired(batch: int = 1000) -> int:
    """Delete logins in progress past their TTL (unusable already, see current_attempt): the
    worker runs this with the session sweep, so a login page hit by bots does not grow the table
    when no `idp purge` runs from cron. Commits per batch."""
    return delete_in_batches(LoginAttempt, LoginAttempt.expires_at <= now(), batch)


def current_attempt() -> LoginAttempt | None:
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, str) or len(raw) > 128:
        return None
    row = db.session.get(LoginAttempt, digest(raw))
    return row if row is not None and row.expires_at > now() else None


def drop(row: LoginAttempt | None) -> bool:
    """End this login (one DELETE); True when this request ended it, False when a racing request
    already had. The caller commits."""
    session.pop(SESSION_KEY, None)
    if row is None:
        return False
    result = db.session.execute(delete(LoginAttempt).where(LoginAttempt.token_digest == row.token_digest),
                                execution_options={"synchronize_session": False})
    if row in db.session:
        db.session.expunge(row)  # the row is gone: nothing may flush it again
    return result.rowcount == 1


def _change(row: LoginAttempt, *where, **values) -> bool:
    """One conditional UPDATE of this login; True when the row was still there (and matched)."""
    result = db.session.execute(update(LoginAttempt).where(LoginAttempt.token_digest == row.token_digest, *where)
                                .values(**values), execution_options={"synchronize_session": False})
    if result.rowcount != 1:
        return False
    for name, value in values.items():
        set_committed_value(row, name, value)
    return True


def retarget(row: LoginAttempt, next_path: str) -> None:
    """Where this login returns to (the sign-in form's own `next`); a login a racing request ended
    is left alone (the step that follows finds it gone)."""
    if row.next != next_path:  # usually the same: no statement then
        _change(row, next=next_path)


def proofs_of(row: LoginAttempt) -> list[steps.Proof]:
    return steps.load_proofs(row.proofs)


def next_step(row: LoginAttempt) -> steps.Step:
    enrolled = enrolled_factors(row.user) if row.user_id is not None else set()
    return steps.next_step(proofs_of(row), enrolled=enrolled, target=row.target,
                           required=row.target if row.must else None)


def is_asking(row: LoginAttempt | None, factor: str) -> bool:
    """Whether this login's next step is to prove `factor` (the guard of every factor view)."""
    step = next_step(row) if row is not None else None
    return isinstance(step, steps.Ask) and factor in step.choices


def is_enrolling(row: LoginAttempt | None, factor: str) -> bool:
    step = next_step(row) if row is not None else None
    return isinstance(step, steps.Enrol) and factor in step.choices


def record(row: LoginAttempt, user: User, proof: steps.Proof) -> None:
    """Add a proof to the login (the first one names the person); the caller commits."""
    if row.user_id is not None and row.user_id != user.id:
        raise WrongUser()
    # Only if the login is still there and still about the person it was about when read (a
    # racing request may have named someone); proofs only grow, so a racer's lost proof only
    # means asking for it again.
    same_person = LoginAttempt.user_id.is_(None) if row.user_id is None else LoginAttempt.user_id == row.user_id
    if not _change(row, same_person, user_id=user.id, proofs=row.proofs + steps.dump_proofs([proof]), failures=0):
        raise LoginGone(row.next)
    set_committed_value(row, "user", user)


def proved(row: LoginAttempt, user: User, proof: steps.Proof, *, spent: bool = False):
    """Record a proof and go on: the next factor's page, enrolment, or the end of the login.

    spent: proving used up a one-time factor; its use is committed first, so that a LoginGone
    from here on (which rolls back) leaves it used (RFC 6238 5.2)."""
    if spent:
        commit_keeping_loaded()  # nothing loaded changed unseen: the factor's own rows are set in place
    record(row, user, proof)
    return advance(row)


COUNTED, TOO_MANY, GONE = "counted", "too_many", "gone"


def failed(row: LoginAttempt) -> str:
    """Count a wrong code in one UPDATE ... RETURNING (parallel failures all count). COUNTED, or
    TOO_MANY when this one reached MAX_FAILURES and the login was dropped, or GONE when a racing
    request had already ended the login. The caller commits (the throttle counters too)."""
    count = db.session.execute(
        update(LoginAttempt).where(LoginAttempt.token_digest == row.token_digest)
        .values(failures=LoginAttempt.failures + 1).returning(LoginAttempt.failures),
        execution_options={"synchronize_session": False}).scalar_one_or_none()
    if count is None:
        session.pop(SESSION_KEY, None)
        return GONE
    set_committed_value(row, "failures", count)
    if count < MAX_FAILURES:
        return COUNTED
    user = row.user
    if drop(row):  # a racer past the limit too finds it dropped: the event is recorded once
        audit.record("authn.login.abandoned", outcome="failure", user=user, reason="too_many_failures")
    return TOO_MANY


def advance(row: LoginAttempt):
    """Redirect to what the state machine asks for next, or finish the login; commits."""
    step = next_step(row)
    if isinstance(step, steps.Ask):
        db.session.commit()
        endpoint = ASK_ENDPOINTS[step.choices[0]]
        return redirect(url_for(endpoint, resume=1) if endpoint == "authn.login" else url_for(endpoint), 303)
    if isinstance(step, steps.Enrol):
        enrol = [f for f in step.choices if ENROL_ENDPOINTS[f] in current_app.view_functions]
        if enrol:
            db.session.commit()  # the TOTP page offers a passkey instead when that page exists
            return redirect(url_for(ENROL_ENDPOINTS[steps.TOTP if steps.TOTP in enrol else enrol[0]]), 303)
        step = steps.Done(steps.acr_of(proofs_of(row)), tuple(steps.amr_for(proofs_of(row))))
    return _finish(row, step)


def _would_lower(current, user: User, acr: str, must_reach: str) -> bool:
    """Whether a login that had to reach `must_reach` (a re-authentication asks for the session's
    own level) fell short and would replace a stronger session of the same person with a weaker
    one. Such a login never replaces it (a sign-in through an upstream ends here too, through
    continue_after_upstream)."""
    return (not steps.meets(acr, must_reach) and current is not None and current.user_id == user.id
            and not steps.meets(acr, current.acr))


def continue_after_upstream(user: User, proofs: list[steps.Proof], acr: str, next_path: str):
    """A sign-in at an upstream provider (plus, when it linked the account, the account's password)
    proved `proofs`, reaching `acr`. When that is not enough here, the login goes on in this state
    machine from those proofs and this returns the redirect to the next factor (or the finished
    login); None when the upstream's sign-in is enough and the caller starts the session itself.

    Not enough means: the person has a second factor here (whoever set one up is always asked for
    one, as after a password, so a one-factor upstream sign-in never makes a session that passes
    for a two-factor one), or the login in progress that sent them upstream aims higher (a
    client's acr, a "Sign in again" that must reach the session's own level)."""
    attempt = current_attempt()
    wanted = attempt.target if attempt is not None else None
    if has_second_factor(user):
        wanted = steps.stronger(wanted, steps.ACR_MFA)
    if wanted is None or steps.meets(acr, wanted):
        return None
    row = begin(next_path, acr=wanted, required=attempt.target if attempt is not None and attempt.must else None)
    for proof in proofs:
        record(row, user, proof)
    return advance(row)


def _finish(row: LoginAttempt, done: steps.Done):
    """Start the SSO session (or raise this one, for a step-up) and return to `next` (through the
    terms page when the current terms are not accepted). With IDP_EMAIL_VERIFICATION_REQUIRED an
    unverified person gets no session but a page that offers a new link."""
    user, amr, next_path, step_up = row.user, list(done.amr), row.next, row.step_up
    must, row_target, target, proofs = row.must, row.target, row.next, proofs_of(row)
    if not drop(row):  # claimed once: of racing requests finishing one login, only one goes on
        raise LoginGone(next_path)
    if current_app.config["IDP_SETTINGS"].email_verification_required and not user.email_verified:
        audit.record("authn.login.failed", outcome="failure", user=user, reason="email_not_verified")
        db.session.commit()
        remember_unverified(user)
        keep_forms_on_origin()  # this page's form asks for a new link, here; not the step's
        return render_template("authn/verify_first.html", user=user), 403
    current = sso.current_session()
    if must and _would_lower(current, user, done.acr, row_target):
        audit.record("authn.login.failed", outcome="failure", user=user, reason="below_session_level",
                     acr=done.acr, session_acr=current.acr)
        db.session.commit()
        raise PageError(_(BELOW_SESSION), 403)
    if terms.needs_acceptance(user):
        target = url_for("authn.accept_terms", next=target)
    if step_up:
        # A step-up adds to the session it began from. If that session ended meanwhile (signed
        # out, perhaps in another tab), the factors it lent this login are void: start again.
        if current is None or current.user_id != user.id:
            raise LoginGone(next_path)
        if amr != list(current.amr or []):  # nothing new proved: the session (and auth_time) stay as they are
            if not sso.elevate(current, amr, done.acr, proofs):
                raise LoginGone(next_path)  # ended between the read and the update
            audit.record("authn.login.stepped_up", user=user, amr=amr, acr=done.acr)
    else:
        sso.start(user, amr=amr, acr=done.acr, proofs=proofs)
        audit.record("authn.login.succeeded", user=user, amr=amr, acr=done.acr)
    db.session.commit()
    return redirect(target, 303)
