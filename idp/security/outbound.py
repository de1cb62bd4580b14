"""Outbound HTTP that cannot be pointed at our own network (server-side request forgery).

The server fetches and posts to URLs that clients register (jwks_uri, backchannel_logout_uri) and
that operators configure (upstream identity providers). A public-looking name may resolve to
127.0.0.1, to 10.x or to 169.254.169.254 (cloud metadata), today or after a DNS change. So every
new connection resolves the host itself, refuses when ANY of its addresses is not public, and
connects to the address it checked: a second lookup cannot swap it. TLS still verifies the
certificate for the name, and SNI and Host stay the name.

`allow_private` (development) lets every address through; `allowed_networks` lets an operator
reach, say, an upstream IdP on a private network. No proxy from the environment is used: a proxy
would resolve the name itself, after our check.

A body (unless the caller streams it) must arrive within the request's timeout as a whole and be
at most MAX_BODY_BYTES: requests' own timeout bounds each socket read only, so a server that
trickles bytes could otherwise hold the worker. The connection, the status line and the headers
are bounded by the same budget, through a watchdog that shuts the socket when it is spent (a
server trickling header lines would otherwise hold a back-channel logout delivery, whose URI
whoever registers a client chooses). A streamed request reads its body itself (jwks_fetch has
its own deadline; back-channel logout reads no body).
"""
from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(requests.exceptions.ConnectionError):
    """The host resolves to an address that is not public (and not explicitly allowed)."""


class ResponseTooLarge(requests.exceptions.RequestException):
    """The body is larger than MAX_BODY_BYTES."""


# Metadata, JWK Sets, token and userinfo answers and logout acknowledgements are a few kilobytes.
MAX_BODY_BYTES = 1024 * 1024


def is_public_address(ip: str | IPAddress) -> bool:
    """Whether `ip` is a globally routable unicast address: not private, loopback, link-local,
    unique-local, site-local, multicast, reserved, unspecified or shared (CGNAT); an IPv4-mapped
    IPv6 address is judged as the IPv4 address it carries."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address) and (address.is_site_local or address.sixtofour is not None
                                                       or address.teredo is not None):
        return False  # fec0::/10, and 2002::/16 and 2001::/32 tunnel to an IPv4 address we did not check
    return address.is_global and not (address.is_private or address.is_loopback or address.is_link_local
                                      or address.is_multicast or address.is_reserved or address.is_unspecified)


@dataclass(frozen=True)
class Policy:
    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()

    def permits(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%", 1)[0])  # a scope id (fe80::1%eth0) is not part of it
        if self.allow_private or is_public_address(address):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed_networks)


def policy_for(settings) -> Policy:
    """The policy of a Settings: everything in development, else public addresses plus
    IDP_OUTBOUND_ALLOW_PRIVATE."""
    return Policy(allow_private=settings.is_development, allowed_networks=settings.outbound_allowed_networks)


def checked_addresses(host: str, port: int, policy: Policy) -> list[str]:
    """The addresses of `host`, all of them permitted by `policy`, else AddressRefused."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    refused = [a for a in addresses if not policy.permits(a)]
    if refused or not addresses:
        raise AddressRefused(f"{host} resolves to an address that is not public")
    return addresses


_watched = threading.local()  # the connections the request being sent on this thread opened


class _PinnedConnection(HTTPConnection):
    """Resolves and checks the host once per new socket, then connects to a checked address."""
    outbound_policy = Policy()

    def _new_conn(self) -> socket.socket:
        try:
            addresses = checked_addresses(self._dns_host.rstrip("."), self.port, self.outbound_policy)
        except socket.gaierror as failure:
            raise NewConnectionError(self, f"Failed to resolve the host: {type(failure).__name__}") from failure
        last: OSError | None = None
        for address in addresses:
            try:
                sock = connection.create_connection((address, self.port), self.timeout,
                                                    source_address=self.source_address,
                                                    socket_options=self.socket_options)
            except TimeoutError as failure:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from failure
            except OSError as failure:
                last = failure
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            watched = getattr(_watched, "connections", None)
            if watched is not None:  # the watchdog of the request this thread is sending
                watched.append(self)
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}") from last


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, policy: Policy):
        self._policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        bound = {"outbound_policy": self._policy}
        http = type("PinnedHTTPConnection", (_PinnedConnection,), bound)
        https = type("PinnedHTTPSConnection", (_PinnedHTTPSConnection,), bound)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        started, budget = time.monotonic(), _total_seconds(timeout)
        _watched.connections = opened = []
        expired = threading.Event()

        def cut():
            """The budget is spent while connecting or reading the status line and headers
            (requests' timeout bounds each read only): shut the socket so the read returns."""
            expired.set()
            for conn in list(opened):
                with contextlib.suppress(OSError, AttributeError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(budget, cut)
        watchdog.daemon = True
        watchdog.start()
        try:  # never through a proxy: it would resolve the name itself, after our check
            response = super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)
        except requests.exceptions.ConnectionError as failure:
            refused = _refusal_in(failure)
            if refused is not None:
                raise AddressRefused(str(refused), request=request) from None
            if expired.is_set():
                raise requests.exceptions.ReadTimeout("the server did not answer in time", request=request) from None
            raise
        finally:
            watchdog.cancel()
            _watched.connections = None
        if expired.is_set():  # cut just as the headers arrived: the socket is unusable anyway
            response.close()
            raise requests.exceptions.ReadTimeout("the server did not answer in time", request=request)
        if not stream:
            _read_bounded(response, started + budget)
        return response


def _total_seconds(timeout) -> float:
    """The whole request's budget: requests' timeout is per connect and per socket read."""
    if isinstance(timeout, tuple):
        return sum(t for t in timeout if t is not None) or 30.0
    return float(timeout) if timeout is not None else 30.0


def _read_bounded(response: requests.Response, deadline: float) -> None:
    """Read the body now, as requests would, but give up past `deadline` or MAX_BODY_BYTES: a
    server that trickles a byte at a time (each read within the socket timeout) or sends an
    endless body must not hold a worker. Decompressed bytes are counted, so a small gzip bomb
    is stopped too. A read may overrun the deadline by at most one socket timeout."""
    body = bytearray()
    try:
        while chunk := response.raw.read1(16384, decode_content=True):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ResponseTooLarge(f"the response is larger than {MAX_BODY_BYTES} bytes",
                                       request=response.request, response=response)
            if time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout("the response did not arrive in time",
                                                      request=response.request, response=response)
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout) as failure:
        response.close()
        raise requests.exceptions.ReadTimeout(str(failure), request=response.request) from None
    except urllib3.exceptions.HTTPError as failure:
        response.close()
        raise requests.exceptions.ConnectionError(str(failure), request=response.request) from None
    except requests.exceptions.RequestException:
        response.close()
        raise
    response._content = bytes(body)  # what requests' .content would hold; Session.send reads it from here
    response._content_consumed = True
    response.close()


def _refusal_in(failure: BaseException) -> AddressRefused | None:
    """urllib3 wraps what _new_conn raises; find our refusal in the chain to keep its reason."""
    seen, todo = set(), [failure]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, AddressRefused):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += [arg for arg in current.args if isinstance(arg, BaseException)]
    return None


def mount(session: requests.Session, policy: Policy) -> requests.Session:
    """Make `session` connect only to addresses `policy` permits, never through a proxy (a CA
    bundle from REQUESTS_CA_BUNDLE still applies)."""
    adapter = _PinnedAdapter(policy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def session(policy: Policy) -> requests.Session:
    """A new requests session whose every connection is checked and pinned by `policy`."""
    return mount(requests.Session(), policy)
