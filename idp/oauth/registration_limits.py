"""Rate limits of dynamic client registration (RFC 7591 3) and of the client configuration
endpoint (RFC 7592 2), counted in fixed windows of IDP_CLIENT_REGISTRATION_WINDOW. The counters
are rows in the database, so every instance counts the same requests.

Registration counts per address (an IPv4 address or an IPv6 /64, as for login throttling), per
network (the IPv4 /24 or IPv6 /48 around it: one site with many /64s gets one share) and for
everyone together. A request carrying a usable initial access token is not counted: an operator
issued that token for exactly one client. Every other request is, valid or not, before its body
is read. The configuration endpoint counts every request per address, before the registration
access token is checked, so wrong tokens count too.

Past a limit the answer is 429 with Retry-After and nothing happens. The counting (what a refused
request counts against, which refusal is an audit event) lives in authn.rate_limits, shared with the
limits of self-registration.
"""
from __future__ import annotations

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Error

from idp.authn import rate_limits
from idp.authn.errors import RateLimited
from idp.authn.throttle import client_network

KEY_PREFIX = "client-registration"
CONFIGURATION_KEY_PREFIX = "client-configuration"


class RegistrationLimited(OAuth2Error):
    """429 with Retry-After (RFC 6585 4). No OAuth error code is registered for rate limiting;
    temporarily_unavailable (RFC 6749 4.1.2.1) tells the client what to do: try again later."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after: int, what: str = "client registrations"):
        super().__init__(f"too many {what}, try again after Retry-After seconds")
        self.retry_after = retry_after

    def get_headers(self):
        return [*default_json_headers, ("Retry-After", str(self.retry_after))]


def counters(ip: str, settings) -> list[tuple[str, str, int]]:
    """(name, key, limit) of each counter a registration request from `ip` adds to, narrowest first."""
    return rate_limits.counters(KEY_PREFIX, ip, settings.client_registration_per_ip,
                                settings.client_registration_per_network, settings.client_registration_total)


def configuration_counters(ip: str, settings) -> list[tuple[str, str, int]]:
    """(name, key, limit) of the counter a client configuration request from `ip` adds to."""
    return [("ip", f"{CONFIGURATION_KEY_PREFIX}:ip:{client_network(ip)[:64]}", settings.client_configuration_per_ip)]


def count_registration(ip: str, settings) -> None:
    """Count one registration request from `ip` and commit the count on its own (a request that
    fails later still counts); raise RegistrationLimited past a limit."""
    _count("register", counters(ip, settings), settings, "client registrations")


def count_configuration(ip: str, settings) -> None:
    """Count one client configuration request from `ip` (RFC 7592 2, any method, before its
    token is checked) and commit the count; raise RegistrationLimited past the limit."""
    _count("configure", configuration_counters(ip, settings), settings, "client configuration requests")


def _count(endpoint: str, rows: list[tuple[str, str, int]], settings, what: str) -> None:
    """Count the request on `rows` (authn.rate_limits.count); past a limit, the OAuth error."""
    try:
        rate_limits.count(rows, settings.client_registration_window, "oauth.registration.limited", endpoint=endpoint)
    except RateLimited as limited:
        raise RegistrationLimited(limited.retry_after, what) from None
