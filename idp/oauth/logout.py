"""Logout that reaches every app.

RP-Initiated Logout 1.0 at /end-session: parse_end_session() validates what the app sent,
needs_confirmation() decides whether the person must confirm, finish() ends the browser's
session and says where to go next. authlib's EndSessionEndpoint was not used: it checks the
hint's signature but not its issuer or type, reads client.client_metadata, and cannot find the
client of our ID tokens (aud is a list); its rules are the same as these.

Back-Channel Logout 1.0: whenever an SSO session ends (authn calls on_sessions_ended in the same
transaction), the grants issued in it lose their refresh tokens unless they hold offline_access
(taking the account back revokes those too: revoke_grants, after a password reset, a password
change that signs out everywhere else, or `idp users set-password`), and every client that took
part and registered a backchannel_logout_uri gets an outbox message.
The logout token is signed when it is delivered, so a retry hours later carries a fresh iat/exp,
with the client's registered id_token_signed_response_alg (or not at all: tokens.id_token_alg_refusal).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from authlib.common.urls import add_params_to_uri
from flask import Flask, current_app
from sqlalchemy import exists, select

from idp import audit
from idp.authn.session import EndedSession, end, on_session_end
from idp.clock import now, timestamp
from idp.extensions import db
from idp.keys import Signer, keyring
from idp.models import Client, Grant, SsoSession
from idp.oauth.clients import find_client
from idp.oauth.subjects import subject_for
from idp.oauth.tokens import id_token_alg_refusal, id_token_signer, sign, verify_id_token_hint
from idp.outbox import DeliveryFailed, DeliveryImpossible, DestinationFailed, enqueue, register_handler
from idp.security import outbound
from idp.security.tokens import random_token
from idp.users.directory import identifier_key
from idp.users.recovery import on_password_reset

log = logging.getLogger("idp.oauth.logout")

KIND = "backchannel_logout"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = 120  # BCL 1.0 2.4: short, "preferably at most two minutes"
DELIVERED = (200, 204)  # BCL 1.0 2.8 says 200; 204 is common and just as clear
PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")
MAX_LENGTH = {"id_token_hint": 8192}  # as long as tokens.verify_id_token_hint reads
MAX_OTHER_LENGTH = 4096


def init_logout(app: Flask) -> None:
    on_session_end(app, on_sessions_ended)
    on_password_reset(app, revoke_grants_after_reset)
    register_handler(app, KIND, deliver_logout_token, destination="client_id")  # one client, one endpoint


def revoke_grants(user, reason: str, keep_sid: str | None = None) -> int:
    """Take the account back: revoke every live grant of the person, offline_access included, but
    those issued in the SSO session keep_sid (the apps the person uses in this very browser), so
    whatever someone else obtained stops working at once, refresh and access tokens alike. The one
    rule for a password reset, a password change that signs out everywhere else and `idp users
    set-password`; the caller then ends the sessions (on_sessions_ended tells the apps) and
    commits. Returns how many grants it revoked."""
    query = select(Grant).where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
    if keep_sid is not None:
        query = query.where((Grant.sid != keep_sid) | Grant.sid.is_(None))
    grants = db.session.scalars(query.order_by(Grant.created_at)).all()
    for grant in grants:
        grant.revoked_at = now()
        audit.record("oauth.grant.revoked", user=grant.user_id, client=grant.client.client_id,
                     reason=reason, sid=grant.sid)
    return len(grants)


def revoke_grants_after_reset(user) -> None:
    """A password reset keeps nothing: whoever reads the mailbox takes the account back."""
    revoke_grants(user, "password_reset")


# --- when a session ends ------------------------------------------------------------------------
def on_sessions_ended(ended: list[EndedSession], reason: str) -> None:
    """Revoke the session's grants without offline_access and queue one logout token per client
    and session; runs inside the caller's transaction, before its commit."""
    grants = db.session.scalars(select(Grant).where(Grant.sid.in_([e.sid for e in ended]))
                                .order_by(Grant.created_at)).all()
    queued: set[tuple[int, str]] = set()
    for grant in grants:
        if grant.revoked_at is None and "offline_access" not in grant.scope.split():
            grant.revoked_at = now()
            audit.record("oauth.grant.revoked", user=grant.user_id, client=grant.client.client_id,
                         reason="session_ended", sid=grant.sid)
        client = grant.client
        if client.backchannel_logout_uri and (client.id, grant.sid) not in queued:
            queued.add((client.id, grant.sid))
            enqueue(KIND, {"client_id": client.client_id, "sid": grant.sid, "user_id": grant.user_id,
                           "sub": _subject(grant), "reason": reason})


def _subject(grant: Grant) -> str | None:
    """The sub this client saw; None (the token then carries sid alone, BCL 1.0 2.4) when a
    pairwise client lost its sector since, rather than failing the person's logout."""
    try:
        return subject_for(grant.user, grant.client)
    except ValueError:
        log.warning("no sub for client %s in its logout token: %s", grant.client.client_id, "no sector")
        return None


def logout_token(client: Client, sid: str, sub: str | None, signer: Signer) -> str:
    """BCL 1.0 2.4: iss, aud, iat, exp, jti, events, sid and sub; never a nonce; typed logout+jwt."""
    t = timestamp()
    claims = {"iss": current_app.config["IDP_SETTINGS"].issuer, "aud": client.client_id, "iat": t,
              "exp": t + LOGOUT_TOKEN_TTL, "jti": random_token(16), "events": {EVENT: {}}, "sid": sid}
    if sub:
        claims["sub"] = sub
    return sign({"typ": "logout+jwt"}, claims, signer)


def deliver_logout_token(payload: dict) -> None:
    """BCL 1.0 2.5: POST logout_token form-encoded; 200/204 is delivered, anything else (a 400
    too: it may come from an RP whose key cache is stale after a rotation, or a 3xx: redirects
    are not followed) is retried. Only public addresses are reached (idp.security.outbound). No
    connection or no answer within IDP_BACKCHANNEL_LOGOUT_TIMEOUT is the endpoint's failure, not
    the token's: the client's other due tokens share it untried (outbox.DestinationFailed), so a
    client whose endpoint hangs costs the worker one timeout per back-off step. A token we cannot
    sign with the client's registered alg fails at once, audited, never retried."""
    client = find_client(payload["client_id"])
    if client is None or not client.backchannel_logout_uri:
        log.info("logout token for %s dropped: the client or its backchannel_logout_uri is gone", payload["client_id"])
        return
    ring = keyring()
    signer = id_token_signer(client, ring)  # BCL 1.0 2.6: the RP checks the alg as an ID token's
    if signer is None:
        refused = id_token_alg_refusal(client, ring)
        audit.record("oauth.logout_token.failed", outcome="failure", user=payload["user_id"],
                     client=client.client_id, sid=payload["sid"], reason=refused)
        raise DeliveryImpossible(refused)
    settings = current_app.config["IDP_SETTINGS"]
    body = {"logout_token": logout_token(client, payload["sid"], payload["sub"], signer)}
    try:
        with outbound.session(outbound.policy_for(settings)) as session, session.post(
                client.backchannel_logout_uri, data=body, timeout=settings.backchannel_logout_timeout,
                allow_redirects=False, stream=True,
                headers={"User-Agent": "idp back-channel logout", "Accept-Encoding": "identity"}) as response:
            status = response.status_code
    except outbound.AddressRefused:
        raise DestinationFailed("backchannel_logout_uri refused: its host has an address that is not public") from None
    except (requests.RequestException, OSError, ValueError) as error:
        raise DestinationFailed(f"backchannel_logout_uri unreachable: {type(error).__name__}") from None
    if status not in DELIVERED:
        raise DeliveryFailed(f"backchannel_logout_uri answered HTTP {status}")
    audit.record("oauth.logout_token.delivered", user=payload["user_id"], client=client.client_id,
                 sid=payload["sid"])


# --- RP-initiated logout -------------------------------------------------------------------------
class EndSessionRejected(ValueError):
    """The request contradicts itself (client_id is not the hint's audience, an unknown client)
    or carries a value longer than we accept."""


@dataclass(frozen=True)
class EndSessionRequest:
    params: dict          # the accepted parameters, carried through the confirmation form
    client: Client | None
    hint: dict | None     # claims of a valid id_token_hint
    hint_failed: bool     # an id_token_hint was sent and failed validation
    target: str | None    # a post_logout_redirect_uri registered for the client, with state


@dataclass(frozen=True)
class EndSessionPlan:
    confirm: bool             # the person confirms on our page first
    redirect_to: str | None   # where to go once signed out; None: our signed-out page


def _hint_client_id(hint: dict) -> str | None:
    aud = hint.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud or [])
    if hint.get("azp"):
        return hint["azp"] if hint["azp"] in audiences else None
    return audiences[0] if len(audiences) == 1 else None


def parse_end_session(values) -> EndSessionRequest:
    """RP-Initiated Logout 1.0 2 and 3: what the app sent, checked. A hint that fails validation
    is not used; a post-logout target must match one of the client's post_logout_redirect_uris
    exactly (whether we go there is plan()'s decision). A value too long is refused, never cut:
    a cut hint would fail validation and a cut state would come back altered."""
    for name in PARAMS:
        if len(values.get(name) or "") > MAX_LENGTH.get(name, MAX_OTHER_LENGTH):
            raise EndSessionRejected(f"{name} is too long")
    params = {name: values[name] for name in PARAMS if values.get(name)}
    hint = verify_id_token_hint(params["id_token_hint"]) if "id_token_hint" in params else None
    client_id = params.get("client_id")
    if hint is not None and client_id:
        aud = hint["aud"] if isinstance(hint["aud"], list) else [hint["aud"]]
        if client_id not in aud:  # RP-Initiated Logout 1.0 2: client_id MUST match the hint's aud
            raise EndSessionRejected("client_id is not the audience of id_token_hint")
    if not client_id and hint is not None:
        client_id = _hint_client_id(hint)
    client = find_client(client_id) if client_id else None
    if "client_id" in params and client is None:
        raise EndSessionRejected("client_id is not a registered client")
    target = params.get("post_logout_redirect_uri")
    if client is None or target not in (client.post_logout_redirect_uris or []):
        target = None
    elif "state" in params:
        target = add_params_to_uri(target, {"state": params["state"]})
    return EndSessionRequest(params=params, client=client, hint=hint,
                             hint_failed="id_token_hint" in params and hint is None, target=target)


def plan(req: EndSessionRequest, sso: SsoSession | None) -> EndSessionPlan:
    """Whether the person confirms first, and where they go once signed out."""
    in_session = hint_in_session(req, sso)
    return EndSessionPlan(confirm=_needs_confirmation(req, sso, in_session),
                          redirect_to=_redirect_target(req, in_session))


def hint_in_session(req: EndSessionRequest, sso: SsoSession | None) -> bool:
    """True when the id_token_hint belongs to this browser's current session with its app: the
    sub that app sees for the signed-in person, the session's sid, and that app took part in the
    session (a grant with that sid; the purge keeps those while the session lasts). RP-Initiated
    Logout 1.0 2: the OP MUST ask the person when the ID token does not belong to the current OP
    session with the RP; 4: a hint whose sid is not the current session's is suspect."""
    if sso is None or req.hint is None or req.hint.get("sid") != sso.sid:
        return False
    hint_client = find_client(_hint_client_id(req.hint) or "")
    if hint_client is None:
        return False
    try:
        expected_sub = subject_for(sso.user, hint_client)
    except ValueError:  # a pairwise client without a sector: the hint cannot be matched
        return False
    took_part = exists().where(Grant.sid == sso.sid, Grant.client_id == hint_client.id)
    return req.hint.get("sub") == expected_sub and bool(db.session.scalar(select(took_part)))


def _needs_confirmation(req: EndSessionRequest, sso: SsoSession | None, in_session: bool) -> bool:
    """RP-Initiated Logout 1.0 2 and 6: unless the id_token_hint belongs to this session (and a
    logout_hint, when given, names the signed-in person too) the person confirms first. An old
    ID token, from a session that has ended, travels in URLs and logs; it must not be enough to
    sign someone out unasked."""
    if sso is None:
        return False
    if not in_session:
        return True
    user = sso.user
    named = req.params.get("logout_hint")
    return named is not None and identifier_key(named) not in (
        identifier_key(user.username), identifier_key(user.email), user.subject)


def _redirect_target(req: EndSessionRequest, in_session: bool) -> str | None:
    """RP-Initiated Logout 1.0 4: after a hint that failed validation, no redirection; 3: without
    a hint, only where we have other means to trust the target: an operator created or verified
    the client. An unverified client's owner can mint a valid hint with an account of their own,
    so its target is followed only for its own hint of this very session (the person used it)."""
    if req.target is None or req.hint_failed:
        return None
    if req.client.is_unverified:
        its_own = in_session and _hint_client_id(req.hint) == req.client.client_id
        return req.target if its_own else None
    return req.target


def finish(req: EndSessionRequest, step: EndSessionPlan, *, confirmed: bool) -> None:
    """End this browser's session (if any), recorded with where the person goes next; the caller
    commits and redirects to step.redirect_to (or our signed-out page)."""
    row = end(reason="logout")
    if row is not None:
        audit.record("oauth.logout.succeeded", user=row.user_id, client=req.client, sid=row.sid,
                     confirmed=confirmed, redirected=step.redirect_to is not None)
