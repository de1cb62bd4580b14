"""Client metadata of a dynamic registration, checked field by field (RFC 7591 2, OpenID Connect
Dynamic Client Registration 1.0 2, RP-Initiated Logout 1.0 3.1, Back-Channel Logout 1.0 2.2).

authlib's two claims classes run the checks; our subclasses replace their lenient validators
with the rules of the CLI (idp/oauth/clients.py) plus sizes, and raise the RFC 7591 3.2.2 error
with a description naming the field. Every field has a type and a maximum, so nothing a client
sends can reach a validator with a surprising shape. What we cannot honour is refused; what we do
not know is ignored (RFC 7591 2: the server MAY ignore metadata it does not understand) and left
out of the response, so the client sees exactly what was registered.
"""
from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import scope_to_list
from authlib.oauth2.rfc7591 import ClientMetadataClaims as OAuthClaims
from authlib.oauth2.rfc7591 import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oidc.registration import ClientMetadataClaims as OpenIDClaims
from flask import current_app, g

from idp.config import is_loopback
from idp.extensions import db
from idp.models import Client
from idp.oauth.clients import (SIGNING_ALGS, ClientRejected, check_jwks, check_jwks_uri,
                               check_redirect_uri)
from idp.oauth.subjects import can_derive_sector
from idp.users.directory import mixes_scripts

MAX_URI = 2000
MAX_NAME = 200
MAX_URIS = 20       # redirect_uris, post_logout_redirect_uris
MAX_CONTACTS = 10
MAX_CONTACT = 254   # an email address at most (RFC 5321 4.5.3.1.3)
MAX_SCOPE = 1024
MAX_AGE = 2**31 - 1
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")

# The JSON type (and element type) of every field we read; anything else is refused before a
# validator looks at it.
SHAPES = {
    "redirect_uris": (list, str, MAX_URIS), "grant_types": (list, str, len(GRANT_TYPES)),
    "response_types": (list, str, 4), "contacts": (list, str, MAX_CONTACTS),
    "post_logout_redirect_uris": (list, str, MAX_URIS),
    "token_endpoint_auth_method": (str, None, 32), "client_name": (str, None, MAX_NAME),
    "client_uri": (str, None, MAX_URI), "logo_uri": (str, None, MAX_URI), "policy_uri": (str, None, MAX_URI),
    "tos_uri": (str, None, MAX_URI), "jwks_uri": (str, None, MAX_URI), "scope": (str, None, MAX_SCOPE),
    "token_endpoint_auth_signing_alg": (str, None, 16), "id_token_signed_response_alg": (str, None, 16),
    "subject_type": (str, None, 16), "backchannel_logout_uri": (str, None, MAX_URI),
    "application_type": (str, None, 16), "jwks": (dict, None, None), "default_max_age": (int, None, None),
    "require_auth_time": (bool, None, None), "backchannel_logout_session_required": (bool, None, None),
}
# Asking for encryption we cannot do is refused rather than ignored: the client would otherwise
# receive in clear what it expects encrypted.
REFUSED = ("id_token_encrypted_response_alg", "id_token_encrypted_response_enc",
           "userinfo_encrypted_response_alg", "userinfo_encrypted_response_enc", "sector_identifier_uri")


def invalid(field: str, reason: str) -> InvalidClientMetadataError:
    return InvalidClientMetadataError(_printable(f"{field}: {reason}"))


def _printable(text: str) -> str:
    """RFC 6749 5.2 allows only %x20-21 / %x23-5B / %x5D-7E in error_description."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text)[:300]


def _without_value(message: str) -> str:
    """A ClientRejected message without the echoed value (it may hold anything the client sent)."""
    return message.split(": '", 1)[0].split(': "', 1)[0]


def has_uri_characters_only(uri: str) -> bool:
    """RFC 3986 2: printable ASCII without space, quotes, backslash and the other excluded marks
    (anything else must be percent-encoded)."""
    return all(0x21 <= ord(c) <= 0x7E and c not in '"<>\\^`{|}' for c in uri)


def drop_nulls(data: dict) -> dict:
    """RFC 7592 2.2: a field sent as null is treated as omitted."""
    return {key: value for key, value in data.items() if value is not None}


def check_shapes(data: dict) -> None:
    for field, (kind, item, limit) in SHAPES.items():
        if field in data:
            try:
                _check_shape(field, data[field], kind, item, limit)
            except InvalidClientMetadataError as error:
                if field != "redirect_uris":
                    raise
                raise InvalidRedirectURIError(error.description) from None
    for field in REFUSED:
        if field in data:
            raise invalid(field, "is not supported by this server")


def _check_shape(field: str, value, kind, item, limit) -> None:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise invalid(field, "must be a whole number")
    if not isinstance(value, kind):
        raise invalid(field, f"must be a JSON {_json_name(kind)}")
    if kind is list:
        if len(value) > limit:
            raise invalid(field, f"may hold at most {limit} values")
        if not all(isinstance(v, item) for v in value):
            raise invalid(field, "must be an array of strings")
    if kind is str and len(value) > limit:
        raise invalid(field, f"must be at most {limit} characters")


def _json_name(kind) -> str:
    return {list: "array", str: "string", dict: "object", bool: "boolean (true or false)", int: "number"}[kind]


def check_web_uri(field: str, uri: str, allow_loopback_http: bool = False) -> None:
    """An absolute https URL (http only on loopback where allowed) with a host, no user
    information and no fragment."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise invalid(field, "is not a valid URL") from None
    if not has_uri_characters_only(uri) or "#" in uri or not parts.hostname or "@" in parts.netloc:
        raise invalid(field, "must be an absolute URL with a host, without user information or fragment")
    if parts.scheme == "https" or (allow_loopback_http and parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise invalid(field, "must use https" + (" (http only on a loopback address)" if allow_loopback_http else ""))



# Characters that show as nothing: Hangul fillers and the blank Braille pattern (letters or symbols
# to Unicode, so isprintable() lets them through).
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _name_key(name: str) -> str:
    """A name as a reader sees it: NFKC, case folded, without spaces, combining marks, format
    characters and blank-looking letters ("idp" + U+034F reads as "idp")."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in folded if not c.isspace() and c not in _BLANKS
                   and unicodedata.category(c) not in ("Mn", "Me", "Cf"))


def _taken_name(name: str) -> bool:
    """Whether a name an application chose for itself is the product's, an operator-created
    client's or a verified one's, up to case, width, spaces and invisible marks: a consent page
    must not read as theirs."""
    key = _name_key(name)
    if key == _name_key(current_app.config["IDP_SETTINGS"].product_name):
        return True
    names = db.session.scalars(db.select(Client.client_name).where(
        (Client.registered_via != "dynamic") | Client.verified_at.is_not(None) | Client.first_party,
        Client.client_id != g.get("idp_client_updating", "")))
    return any(_name_key(other) == key for other in names)

class RegistrationClaims(OAuthClaims):
    """RFC 7591 2 client metadata. `params` is our server metadata (discovery)."""

    REGISTERED_CLAIMS = ["redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types",
                         "client_name", "client_uri", "logo_uri", "scope", "contacts", "tos_uri",
                         "policy_uri", "jwks_uri", "jwks"]

    @classmethod
    def get_claims_options(cls, metadata):
        return {}  # the values are checked below, against the same metadata

    def validate(self, now=None, leeway=0):
        check_shapes(self)
        super().validate(now, leeway)
        self.validate_consistency()

    def validate_redirect_uris(self):
        uris = self.get("redirect_uris", [])
        for index, uri in enumerate(uris):
            try:
                check_redirect_uri(uri)
            except ClientRejected as rejected:
                raise InvalidRedirectURIError(_printable(f"redirect_uris[{index}]: "
                                                         f"{_without_value(str(rejected))}")) from None
            if not has_uri_characters_only(uri):
                raise InvalidRedirectURIError(f"redirect_uris[{index}]: has characters that must be percent-encoded")
        self["redirect_uris"] = list(dict.fromkeys(uris))

    def validate_token_endpoint_auth_method(self):
        method = self.setdefault("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 2
        supported = self.params["token_endpoint_auth_methods_supported"]
        if method not in supported:
            raise invalid("token_endpoint_auth_method", f"must be one of {', '.join(supported)}")

    def validate_grant_types(self):
        grant_types = list(dict.fromkeys(self.setdefault("grant_types", ["authorization_code"])))
        self["grant_types"] = grant_types
        supported = self.params["grant_types_supported"]
        if not grant_types or not set(grant_types) <= set(supported):
            raise invalid("grant_types", f"must be a non-empty subset of {', '.join(supported)}")
        if "refresh_token" in grant_types and "authorization_code" not in grant_types:
            raise invalid("grant_types", "refresh_token needs authorization_code (client_credentials issues none)")
        if "client_credentials" in grant_types and self["token_endpoint_auth_method"] == "none":
            raise invalid("grant_types", "client_credentials needs a client that authenticates")

    def validate_response_types(self):
        # RFC 7591 2.1: the code response type goes with the authorization_code grant, and only it.
        uses_code = "authorization_code" in self["grant_types"]
        response_types = self.setdefault("response_types", ["code"] if uses_code else [])
        if response_types not in ([], ["code"]):
            raise invalid("response_types", "only code is supported")
        if bool(response_types) != uses_code:
            raise invalid("response_types", "code goes with the authorization_code grant type, and only with it")

    def validate_client_name(self):
        name = self.get("client_name")
        if name is not None:
            name = " ".join(name.split())
            if not name or not name.isprintable() or not _name_key(name):
                raise invalid("client_name", "must be 1 to 200 printable characters, some of them visible")
            if mixes_scripts(name):
                raise invalid("client_name", "must use letters from one alphabet and one kind of digits")
            if _taken_name(name):
                raise invalid("client_name", "is the name of this service or of an application its operators "
                                             "added; choose a name of your own")
            self["client_name"] = name

    def validate_client_uri(self):
        self._check_optional_uri("client_uri")

    def validate_logo_uri(self):
        self._check_optional_uri("logo_uri")

    def validate_tos_uri(self):
        self._check_optional_uri("tos_uri")

    def validate_policy_uri(self):
        self._check_optional_uri("policy_uri")

    def _check_optional_uri(self, field: str) -> None:
        if field in self:
            check_web_uri(field, self[field])

    def validate_scope(self):
        default = "openid profile email" + (" offline_access" if "refresh_token" in self["grant_types"] else "")
        scopes = scope_to_list(self.setdefault("scope", default)) or []
        unknown = [s for s in scopes if s not in self.params["scopes_supported"]]
        if unknown or not scopes:
            raise invalid("scope", f"must be a space-separated subset of {' '.join(self.params['scopes_supported'])}")
        self["scope"] = " ".join(dict.fromkeys(scopes))

    def validate_contacts(self):
        for index, contact in enumerate(self.get("contacts", [])):
            if not contact.strip() or len(contact) > MAX_CONTACT or not contact.isprintable():
                raise invalid(f"contacts[{index}]", f"must be 1 to {MAX_CONTACT} printable characters")

    def validate_jwks_uri(self):
        if "jwks_uri" in self:
            self._check_keys_are_for_private_key_jwt("jwks_uri")
            try:
                check_jwks_uri(self["jwks_uri"])
            except ClientRejected as rejected:
                raise invalid("jwks_uri", _without_value(str(rejected)).removeprefix("jwks_uri ")) from None

    def validate_jwks(self):
        if "jwks" in self:
            if "jwks_uri" in self:
                raise invalid("jwks", "jwks and jwks_uri must not both be present (RFC 7591 2)")
            self._check_keys_are_for_private_key_jwt("jwks")
            try:
                check_jwks(self["jwks"])
            except ClientRejected as rejected:
                raise invalid("jwks", str(rejected).removeprefix("jwks ")) from None

    def _check_keys_are_for_private_key_jwt(self, field: str) -> None:
        """We use a client's keys for nothing else (no request objects, no encryption)."""
        if self["token_endpoint_auth_method"] != "private_key_jwt":
            raise invalid(field, "is only used with token_endpoint_auth_method private_key_jwt")

    def validate_software_id(self):
        """Ignored (not stored)."""

    def validate_software_version(self):
        """Ignored (not stored)."""

    def validate_consistency(self):
        if "authorization_code" in self["grant_types"] and not self.get("redirect_uris"):
            raise InvalidRedirectURIError("redirect_uris: the authorization_code grant needs at least one")
        if self["token_endpoint_auth_method"] == "private_key_jwt" and not ("jwks" in self or "jwks_uri" in self):
            raise invalid("token_endpoint_auth_method", "private_key_jwt needs jwks or jwks_uri")


class OpenIDRegistrationClaims(OpenIDClaims):
    """OpenID Connect metadata: Dynamic Client Registration 1.0 2 and the two logout specs."""

    REGISTERED_CLAIMS = ["token_endpoint_auth_signing_alg", "subject_type", "id_token_signed_response_alg",
                         "default_max_age", "require_auth_time", "post_logout_redirect_uris",
                         "backchannel_logout_uri", "backchannel_logout_session_required"]

    @classmethod
    def get_claims_options(cls, metadata):
        return {}

    def validate(self, now=None, leeway=0):
        check_shapes(self)
        super().validate(now, leeway)
        self.validate_logout()

    def validate_token_endpoint_auth_signing_alg(self):
        alg = self.get("token_endpoint_auth_signing_alg")
        method = self.get("token_endpoint_auth_method", "client_secret_basic")
        if alg is None:
            return
        supported = SIGNING_ALGS.get(method, ())  # never none, never HMAC with a public key
        if alg not in supported:
            raise invalid("token_endpoint_auth_signing_alg",
                          f"for {method} must be one of {', '.join(supported)}" if supported
                          else "applies only to client_secret_jwt and private_key_jwt")

    def validate_application_type(self):
        if self.get("application_type", "web") not in ("web", "native"):
            raise invalid("application_type", "must be web or native")

    def validate_sector_identifier_uri(self):
        """Refused in check_shapes: we do not fetch sector documents."""

    def validate_subject_type(self):
        subject_type = self.setdefault("subject_type", "public")
        if subject_type not in self.params["subject_types_supported"]:
            raise invalid("subject_type", f"must be one of {', '.join(self.params['subject_types_supported'])}")
        if subject_type == "pairwise" and not can_derive_sector(self.get("redirect_uris") or []):
            # OIDC Core 8.1: the sector is the one host of the redirect URIs (or, with a private-use
            # scheme or loopback, the client's own); with several https hosts (or no redirect URIs)
            # the client must register a sector_identifier_uri, which we do not support.
            raise invalid("subject_type", "pairwise needs redirect_uris on at most one https host "
                                          "(sector_identifier_uri is not supported)")

    def validate_id_token_signed_response_alg(self):
        """Only an alg a key of ours signs with now (never none): tokens.id_token_signer."""
        alg = self.get("id_token_signed_response_alg")
        supported = self.params["id_token_signing_alg_values_supported"]
        if alg is not None and alg not in supported:
            raise invalid("id_token_signed_response_alg", f"must be one of {', '.join(supported)} (never none)")

    def validate_default_max_age(self):
        if not 0 <= self.get("default_max_age", 0) <= MAX_AGE:
            raise invalid("default_max_age", "must be a number of seconds from 0 to 2147483647")

    def validate_require_auth_time(self):
        self.setdefault("require_auth_time", False)  # auth_time is in every ID token anyway

    def validate_id_token_encrypted_response_alg(self):
        """Refused in check_shapes."""

    def validate_id_token_encrypted_response_enc(self):
        """Refused in check_shapes."""

    def validate_userinfo_signed_response_alg(self):
        """Ignored: UserInfo answers plain JSON."""

    def validate_userinfo_encrypted_response_alg(self):
        """Refused in check_shapes."""

    def validate_userinfo_encrypted_response_enc(self):
        """Refused in check_shapes."""

    def validate_default_acr_values(self):
        """Ignored (not stored)."""

    def validate_initiate_login_uri(self):
        """Ignored (not stored)."""

    def validate_request_object_signing_alg(self):
        """Ignored: request objects are not supported."""

    def validate_request_object_encryption_alg(self):
        """Ignored: request objects are not supported."""

    def validate_request_object_encryption_enc(self):
        """Ignored: request objects are not supported."""

    def validate_request_uris(self):
        """Ignored: request_uri is not supported."""

    def validate_logout(self):
        uris = self.get("post_logout_redirect_uris", [])
        for index, uri in enumerate(uris):
            try:
                check_redirect_uri(uri)  # RP-Initiated Logout 1.0 3.1: same rules as redirect URIs
            except ClientRejected as rejected:
                reason = _without_value(str(rejected)).replace("redirect URI", "URI")
                raise invalid(f"post_logout_redirect_uris[{index}]", reason) from None
            if not has_uri_characters_only(uri):
                raise invalid(f"post_logout_redirect_uris[{index}]", "has characters that must be percent-encoded")
        self["post_logout_redirect_uris"] = list(dict.fromkeys(uris))
        if "backchannel_logout_uri" in self:
            # Back-Channel Logout 1.0 2.2: absolute, may have a query, must not have a fragment. Loopback
            # http only in development: in production a registered client must not make the server
            # POST to its own local services.
            check_web_uri("backchannel_logout_uri", self["backchannel_logout_uri"],
                          allow_loopback_http=current_app.config["IDP_SETTINGS"].is_development)
        self.setdefault("backchannel_logout_session_required", False)
