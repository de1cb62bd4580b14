"""Dynamic client registration (RFC 7591, OpenID Connect Dynamic Client Registration 1.0) and the
client configuration endpoint (RFC 7592), as authlib endpoint subclasses.

Registration needs an initial access token (IDP_CLIENT_REGISTRATION=protected, the default; one
token registers one client) or nothing (open); requests without a usable token are rate limited
(registration_limits), as is every request to the configuration endpoint. The answer carries a
registration access token that reads, replaces and deletes that one client; we keep only its
digest, and it does not change on update. Clients registered here are never first-party: a
person always sees the consent page, which calls them unverified until an operator verifies them
(`idp clients verify`), and again once they change what the operator checked (VERIFIED_FIELDS).
An update never changes the subject type, nor a pairwise client's sector (keep_subject).
"""
from __future__ import annotations

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint as _RegistrationEndpoint
from authlib.oauth2.rfc7591 import InvalidRedirectURIError
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint as _ConfigurationEndpoint
from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from idp import audit
from idp.clock import now
from idp.extensions import db
from idp.keys import keyring
from idp.models import Client, InitialAccessToken
from idp.oauth import client_metadata, discovery, initial_tokens, registration_limits
from idp.oauth.client_secrets import store_secret
from idp.oauth.clients import SECRET_METHODS, find_client, new_client_id
from idp.oauth.subjects import derived_sector, own_sector, sector_from_redirect_uris
from idp.security.tokens import constant_time_equal, digest, random_token

# Fields returned even when empty: an omitted response_types would mean "code" (RFC 7591 2).
ALWAYS_SHOWN = ("redirect_uris", "grant_types", "response_types")
# What an operator looks at to verify a client: changing one of them (RFC 7592 2.2) makes it unverified.
# The URIs the browser is sent to (redirect, post-logout, login initiation) count: an operator
# verified where people land, not only what the consent page says.
VERIFIED_FIELDS = ("client_name", "client_uri", "logo_uri", "policy_uri", "tos_uri", "redirect_uris",
                   "post_logout_redirect_uris", "initiate_login_uri")


class BodyTooLarge(OAuth2Error):
    error = "invalid_request"
    status_code = 413


class _Body(JsonPayload):
    """The request body as a JSON object, read when first needed (inside authlib's error
    handling, so a bad body is an RFC 7591 3.2.2 error and not an HTML page)."""

    @property
    def data(self) -> dict:
        try:
            data = request.get_json(silent=True)
        except RequestEntityTooLarge:
            raise BodyTooLarge("the request body is too large") from None
        except RecursionError:  # nesting too deep for the JSON parser
            raise InvalidRequestError("the body is not a JSON object we can read") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("the body must be a JSON object sent as application/json")
        return client_metadata.drop_nulls(data)


def _json_request() -> JsonRequest:
    json_request = JsonRequest(request.method, request.url, request.headers)
    json_request.payload = _Body()
    return json_request


def _settings():
    return current_app.config["IDP_SETTINGS"]


def _bearer(json_request) -> str | None:
    header = json_request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    return token if 0 < len(token) <= 512 else None


def _refuse(endpoint: str, reason: str, description: str) -> InvalidTokenError:
    """RFC 6750 3.1 invalid_token (401), with an audit event for the refusal."""
    audit.record("oauth.registration.refused", outcome="failure", endpoint=endpoint, reason=reason)
    db.session.commit()
    return InvalidTokenError(description)


def server_metadata() -> dict:
    """What registration checks metadata against: our discovery document, whose
    id_token_signing_alg_values_supported are the algs ID tokens are signed with now."""
    return discovery.metadata(_settings().issuer, keyring().algs)


def validate_metadata(data: dict) -> dict:
    """Every claims class over the whole request; the registered metadata, normalised."""
    meta = server_metadata()
    result = {}
    for claims_class in (client_metadata.RegistrationClaims, client_metadata.OpenIDRegistrationClaims):
        claims = claims_class(data, {}, {}, meta)
        claims.validate()
        result.update(claims.get_registered_claims())
    return result


class _MetadataHooks:
    """What both endpoints share: the JSON body, the metadata checks, the server metadata."""

    def create_endpoint_request(self, _request):
        return _json_request()

    def get_server_metadata(self):
        return server_metadata()

    def extract_client_metadata(self, json_request):
        return validate_metadata(json_request.payload.data)


class ClientRegistrationEndpoint(_MetadataHooks, _RegistrationEndpoint):
    """POST /oauth/register (RFC 7591 3)."""

    def create_registration_response(self, json_request):
        credential = self.authenticate_token(json_request)
        metadata = self.extract_client_metadata(json_request)
        client, secret, registration_token = register_client(metadata, credential)
        return 201, client_information(client, secret, registration_token), default_json_headers

    def authenticate_token(self, json_request):
        """The initial access token (RFC 7591 3), or True in open mode. A request without a usable
        one counts against the registration limits first; in open mode an unusable one is ignored."""
        settings = _settings()
        token = _bearer(json_request)
        row, reason = initial_tokens.find_usable(token) if token else (None, "missing")
        if row is not None:
            return row  # an operator issued it for one client: not counted
        registration_limits.count_registration(request.remote_addr or "-", settings)
        if settings.client_registration == "open":
            return True
        if reason == "missing":
            raise _refuse("register", "missing", "an initial access token is required (Authorization: Bearer)")
        raise _refuse("register", reason, "the initial access token is unknown, used or expired")


class ClientConfigurationEndpoint(_MetadataHooks, _ConfigurationEndpoint):
    """GET, PUT and DELETE /oauth/register/<client_id> (RFC 7592 2)."""

    def authenticate_token(self, json_request):
        """The registration access token of the client in the URL, compared in constant time.
        Wrong, foreign, missing or for a client that is gone: the same 401 (RFC 7592 2). Every
        request counts against the configuration limit first, so guessing tokens is slow too."""
        registration_limits.count_configuration(request.remote_addr or "-", _settings())
        token = _bearer(json_request)
        client = find_client(request.view_args["client_id"])
        stored = client.registration_access_token_digest if client is not None else None
        if token is None or not constant_time_equal(digest(token), stored or "-" * 64) or not stored:
            raise _refuse("configure", "missing" if token is None else "invalid",
                          "the registration access token is invalid for this client")
        return RegistrationAccess(client, token)

    def authenticate_client(self, json_request):
        return json_request.credential.client

    def revoke_access_token(self, json_request, token):
        """Not reached: authenticate_token only succeeds for an existing client."""

    def check_permission(self, client, json_request):
        return client.registered_via == "dynamic"

    def introspect_client(self, client):
        return client_information(client, None, None)

    def generate_client_registration_info(self, client, json_request):
        return {"registration_client_uri": configuration_uri(client),
                "registration_access_token": json_request.credential.token}

    def update_client(self, client, metadata, json_request):
        json_request.new_secret = change_client(client, metadata, json_request.payload.data.get("client_secret"))
        return client

    def create_update_client_response(self, client, json_request):
        """authlib's checks of RFC 7592 2.2, first with a description (and a type check)."""
        data = json_request.payload.data
        for field in ("registration_access_token", "registration_client_uri", "client_secret_expires_at",
                      "client_id_issued_at"):
            if field in data:
                raise InvalidRequestError(f"{field} must not be sent in an update (RFC 7592 2.2)")
        if data.get("client_id") != client.client_id:
            raise InvalidRequestError("client_id must be sent and be the client's own (RFC 7592 2.2)")
        secret = data.get("client_secret")
        if "client_secret" in data and not (isinstance(secret, str) and client.check_client_secret(secret)):
            raise InvalidRequestError("client_secret does not match the current secret (RFC 7592 2.2)")
        g.idp_client_updating = client.client_id  # its own name is not "taken" (client_metadata._taken_name)
        status, body, headers = super().create_update_client_response(client, json_request)
        if json_request.new_secret:
            body["client_secret"] = json_request.new_secret
        return status, body, headers

    def delete_client(self, client, json_request):
        remove_client(client)


class RegistrationAccess:
    """A checked registration access token: the client it belongs to (authlib's token shape)."""

    def __init__(self, client: Client, token: str):
        self.client = client
        self.token = token

    def check_client(self, client) -> bool:
        return client.id == self.client.id


def register_client(metadata: dict, credential) -> tuple[Client, str | None, str]:
    """Store a dynamically registered client; returns it, its secret and its registration token."""
    registration_token = random_token(32)
    client = Client(client_id=new_client_id(), registered_via="dynamic", first_party=False, require_pkce=True,
                    registration_access_token_digest=digest(registration_token))
    _apply(client, metadata)
    client.subject_type = metadata.get("subject_type", "public")
    client.sector_identifier = derived_sector(client.client_id, client.redirect_uris) \
        if client.subject_type == "pairwise" else None
    secret = random_token(32) if client.token_endpoint_auth_method in SECRET_METHODS else None
    store_secret(client, secret)
    db.session.add(client)
    if isinstance(credential, InitialAccessToken) and not initial_tokens.use_up(credential):
        db.session.rollback()
        raise _refuse("register", "used", "the initial access token is unknown, used or expired")
    db.session.flush()
    audit.record("oauth.client.created", client=client, registered_via="dynamic",
                 token_endpoint_auth_method=client.token_endpoint_auth_method, grant_types=client.grant_types,
                 initial_access_token_id=getattr(credential, "id", None))
    db.session.commit()
    return client, secret, registration_token


def change_client(client: Client, metadata: dict, presented_secret: str | None) -> str | None:
    """RFC 7592 2.2: replace the metadata (omitted fields take their defaults). A client that
    now needs a secret it has not got (or one we must keep in clear for client_secret_jwt and did
    not see) gets a new one, returned once; a client that needs none loses it. The subject type
    and sector stay as registered (keep_subject)."""
    keep_subject(client, metadata)
    before = metadata_of(client)
    had_clear = client.client_secret_encrypted is not None
    _apply(client, metadata)
    new_secret = None
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        store_secret(client, None)
    elif client.client_secret_digest is None:
        new_secret = random_token(32)
    elif client.token_endpoint_auth_method == "client_secret_jwt" and not had_clear:
        new_secret = presented_secret or random_token(32)
    elif client.token_endpoint_auth_method != "client_secret_jwt":
        client.client_secret_encrypted = None  # only client_secret_jwt needs the secret in clear
    if new_secret:
        store_secret(client, new_secret)
    if presented_secret == new_secret:
        new_secret = None  # the client knows it already
    client.updated_at = now()
    after = metadata_of(client)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    audit.record("oauth.client.changed", client=client, registered_via="dynamic", fields=changed,
                 reissued=["client_secret"] if new_secret else [])
    if client.verified_at is not None and set(changed) & set(VERIFIED_FIELDS):
        client.verified_at = None
        audit.record("oauth.client.unverified", client=client, reason="metadata_changed",
                     fields=sorted(set(changed) & set(VERIFIED_FIELDS)))
    db.session.commit()
    return new_secret


def remove_client(client: Client) -> None:
    """RFC 7592 2.3: the client goes, and with it (ON DELETE CASCADE) its grants, codes, refresh
    tokens and consents; its JWT access tokens stop being accepted (their grant is gone)."""
    audit.record("oauth.client.deleted", client=client.client_id, registered_via="dynamic")
    db.session.delete(client)
    db.session.commit()


def _apply(client: Client, m: dict) -> None:
    client.client_name = m.get("client_name") or client.client_id
    client.token_endpoint_auth_method = m["token_endpoint_auth_method"]
    client.redirect_uris = m.get("redirect_uris", [])
    client.grant_types = m["grant_types"]
    client.response_types = m["response_types"]
    client.scope = m["scope"]
    for field in ("client_uri", "logo_uri", "policy_uri", "tos_uri", "jwks", "jwks_uri",
                  "token_endpoint_auth_signing_alg", "id_token_signed_response_alg", "default_max_age",
                  "backchannel_logout_uri"):
        setattr(client, field, m.get(field))
    client.contacts = m.get("contacts", [])
    client.post_logout_redirect_uris = m.get("post_logout_redirect_uris", [])
    client.require_auth_time = m.get("require_auth_time", False)
    client.backchannel_logout_session_required = m.get("backchannel_logout_session_required", False)


def keep_subject(client: Client, m: dict) -> None:
    """The `sub` a client sees is fixed at registration. OIDC Core 8.1: a pairwise sector is the
    host of the redirect URIs, and a client may not move to another host's sector, where it would
    read with the tokens it holds the `sub` that sector's clients see; OIDC Core 5.3.2: UserInfo
    `sub` must match the ID tokens'. So neither the subject type nor a pairwise sector changes: a
    client in a host's sector keeps https redirect URIs on that host only (a private-use scheme
    or loopback beside them would hand its codes to any app); one in a sector of its own may
    change them freely, its `sub` being no one else's."""
    subject_type = m.get("subject_type", "public")
    if subject_type != client.subject_type:
        _refuse_change(client, "subject_type_changed", client_metadata.invalid(
            "subject_type", f"cannot change from {client.subject_type} after registration (OIDC Core 8.1); "
                            f"register a new client instead"))
    sector = client.sector_identifier or derived_sector(client.client_id, client.redirect_uris)
    if subject_type != "pairwise" or sector == own_sector(client.client_id):
        return
    if sector_from_redirect_uris(m.get("redirect_uris", [])) != sector:
        where = f"https on the host {sector}" if sector else "on its registered host"
        _refuse_change(client, "sector_changed", InvalidRedirectURIError(
            f"redirect_uris: must all stay {where}, the sector of this pairwise client (OIDC Core 8.1); "
            f"register a new client for another host"))


def _refuse_change(client: Client, reason: str, error: OAuth2Error) -> None:
    """Refuse an update (RFC 7592 2.2, with the RFC 7591 3.2.2 error), with an audit event: a
    client trying to change the `sub` it sees is worth a look."""
    audit.record("oauth.registration.refused", outcome="failure", client=client, endpoint="configure",
                 reason=reason)
    db.session.commit()
    raise error


def metadata_of(client: Client) -> dict:
    """The registered metadata of a client, as RFC 7591 2 names it."""
    names = (client_metadata.RegistrationClaims.REGISTERED_CLAIMS
             + client_metadata.OpenIDRegistrationClaims.REGISTERED_CLAIMS)
    values = {name: getattr(client, name) for name in names}
    return {k: v for k, v in values.items() if v is not None and (v != [] or k in ALWAYS_SHOWN)}


def configuration_uri(client: Client) -> str:
    return f"{_settings().issuer}/oauth/register/{client.client_id}"


def client_information(client: Client, secret: str | None, registration_token: str | None) -> dict:
    """RFC 7591 3.2.1 / RFC 7592 3: client_id, when it was issued, the secret when issued now,
    the registration credentials and every registered field."""
    body = {"client_id": client.client_id, "client_id_issued_at": int(client.created_at.timestamp()),
            **metadata_of(client)}
    if client.client_secret_digest is not None:
        body["client_secret_expires_at"] = 0  # secrets do not expire
    if secret:
        body["client_secret"] = secret
    if registration_token:
        body["registration_access_token"] = registration_token
        body["registration_client_uri"] = configuration_uri(client)
    return body
