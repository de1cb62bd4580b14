"""What /authorize does next with a request, from the request and this browser's SSO session:
authlib's validation, ours (authorize_checks), then interaction.next_step and the terms of
service. One function, so the request, its resumption and the consent form decide alike."""
from __future__ import annotations

from dataclasses import dataclass

from authlib.oidc.core.errors import ConsentRequiredError, InteractionRequiredError, LoginRequiredError

from idp import audit
from idp.authn.session import current_session
from idp.clock import now
from idp.extensions import db
from idp.models import PendingAuthorization, SsoSession
from idp.oauth import authorize_checks, consent, interaction
from idp.oauth.authorize_checks import RequestExtras, UnmetAuthenticationRequirements
from idp.oauth.server import get_server
from idp.oauth.subjects import subject_for
from idp.users import terms


@dataclass(frozen=True)
class AcceptTerms:
    """The signed-in person must accept the current terms of service first."""


@dataclass(frozen=True)
class Decision:
    grant: object                   # authlib's validated authorization code grant
    extras: RequestExtras
    sso: SsoSession | None
    step: interaction.Step | AcceptTerms


def decide(params: dict, row: PendingAuthorization | None) -> Decision:
    """The next step for `params` (stored in `row` once pending, else the current request).
    Raises OAuth2Error; it carries redirect_uri once authlib verified the client and it."""
    sso = current_session()
    user = sso.user if sso else None
    if row is None:
        authorize_checks.check_before_authlib(params)
    grant = get_server().get_consent_grant(request=params if row else None, end_user=user)
    extras = authorize_checks.validate(grant, params)
    where = {"redirect_uri": grant.redirect_uri, "state": params.get("state")}
    fresh = row is not None and sso is not None and sso.auth_time >= row.created_at
    subject = subject_for(user, grant.client) if user is not None and extras.subjects else None
    subjects_match = user is None or all(named == subject for named in extras.subjects)
    if fresh and not subjects_match:  # signed in just now, as someone else than the request names
        raise LoginRequiredError(**where)
    step = interaction.next_step(
        prompts=extras.prompts, signed_in=user is not None, login_is_fresh=fresh,
        # Counted from auth_time in whole seconds, as the ID token carries it and the client checks it
        # (Core 3.1.2.1: re-authenticate when the elapsed time is greater than max_age).
        session_age=now().timestamp() - int(sso.auth_time.timestamp()) if sso else None,
        max_age=extras.max_age, hint_matches=subjects_match,
        consent_covers=user is not None and consent.covers(consent.find(user.id, grant.client.id), grant.request.scope),
        first_party=grant.client.first_party, session_acr=sso.acr if sso else None,
        target=extras.acr.target, required=extras.acr.required,
        stepped_up=row is not None and row.step_up_acr is not None)
    if isinstance(step, interaction.Unmet):
        audit.record("oauth.authentication.unmet", outcome="failure", user=user, client=grant.client,
                     required=extras.acr.required, acr=sso.acr)
        db.session.commit()
        raise UnmetAuthenticationRequirements("the required authentication level was not reached", **where)
    if user is not None and not isinstance(step, (interaction.Login, interaction.StepUp)) \
            and terms.needs_acceptance(user):
        if "none" in extras.prompts:
            raise InteractionRequiredError("the terms of service must be accepted", **where)
        step = AcceptTerms()
    if "none" in extras.prompts and not isinstance(step, interaction.Issue):
        raise ConsentRequiredError(**where) if isinstance(step, interaction.Consent) else LoginRequiredError(**where)
    return Decision(grant, extras, sso, step)
