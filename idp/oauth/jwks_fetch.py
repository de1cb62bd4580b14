"""A client's public keys fetched from its registered jwks_uri, bounded and cached per process.

Only the URI stored on the client is ever fetched (never `jku`/`x5u` from an assertion). The fetch
has a timeout for the whole response, a size limit read in a stream, no redirects and no cookies,
so a slow, huge or hostile endpoint cannot tie up a worker; it connects only to public addresses
(idp.security.outbound), so a jwks_uri cannot reach our own network. Each key set is kept for
IDP_JWKS_CACHE_SECONDS; an unknown `kid` may force one early refetch, at most once per
REFETCH_INTERVAL per URI, and a failure is remembered for as long, so a dead endpoint costs one
timeout per interval, not one per request. A failed refetch keeps the key set it would have
replaced until that set expires.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import requests
import urllib3
from joserfc.jwk import KeySet

from idp.clock import timestamp
from idp.oauth.clients import JWKS_MAX_BYTES, ClientRejected, check_jwks, check_jwks_uri
from idp.security import outbound

REFETCH_INTERVAL = 30  # seconds between two fetches of one URI, whatever the reason
MAX_ENTRIES = 1000     # URIs cached per process; the least recently used is dropped


class JwksUnavailable(Exception):
    """The jwks_uri could not be fetched or did not hold a valid public key set."""


@dataclass(frozen=True)
class _Entry:
    tried_at: int           # the last fetch, good or not: the refetch timer
    keys: KeySet | None     # the last good key set (None: there is none that is young enough)
    keys_at: int = 0        # when `keys` were fetched: they serve for IDP_JWKS_CACHE_SECONDS
    reason: str = ""        # why the last fetch failed


_cache: OrderedDict[str, _Entry] = OrderedDict()
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def key_set(uri: str, *, timeout: float, cache_seconds: int, policy: outbound.Policy,
            refresh: bool = False) -> KeySet:
    """The key set at `uri`, from the cache when fresh; `refresh` asks for a refetch (an unknown
    kid), which happens only when the last fetch is at least REFETCH_INTERVAL old."""
    with _guard:
        lock = _locks.setdefault(uri, threading.Lock())
    with lock:  # one fetch per URI at a time; the others wait for its result
        entry, t = _cache.get(uri), timestamp()
        expired = entry is None or entry.keys is None or t - entry.keys_at >= cache_seconds
        stale = entry is None or (entry.keys is not None and expired) or \
            ((expired or refresh) and t - entry.tried_at >= REFETCH_INTERVAL)
        if stale:
            try:
                entry = _Entry(t, fetch_jwks(uri, timeout, policy), t)
            except JwksUnavailable as failure:
                # A refetch that fails (anyone can ask for one, with a made-up kid) keeps the
                # good keys until they expire: a hiccup at the client's host must not lock it out.
                kept = not expired
                entry = _Entry(t, entry.keys if kept else None, entry.keys_at if kept else 0, str(failure))
            _remember(uri, entry)
    if entry.keys is None:
        raise JwksUnavailable(entry.reason)
    return entry.keys


def _remember(uri: str, entry: _Entry) -> None:
    with _guard:
        _cache[uri] = entry
        _cache.move_to_end(uri)
        while len(_cache) > MAX_ENTRIES:
            old, _ = _cache.popitem(last=False)
            _locks.pop(old, None)


def fetch_jwks(uri: str, timeout: float, policy: outbound.Policy) -> KeySet:
    """GET the JWK Set at `uri`: 200, JSON, at most JWKS_MAX_BYTES, within `timeout` seconds overall."""
    try:
        check_jwks_uri(uri)
    except ClientRejected as rejected:
        raise JwksUnavailable(str(rejected)) from None
    body = _get_bounded(uri, timeout, policy)
    try:
        jwks = json.loads(body)
        check_jwks(jwks)
    except ValueError as invalid:  # ClientRejected is a ValueError, and so is a JSON syntax error
        raise JwksUnavailable(f"jwks_uri did not return a valid public JWK Set: {invalid}") from None
    return KeySet.import_key_set(jwks)


def _get_bounded(uri: str, timeout: float, policy: outbound.Policy) -> bytes:
    """The body, read with read1 so the deadline and the size limit hold even for a body that
    trickles in; compressed bodies are refused rather than inflated."""
    deadline = time.monotonic() + timeout
    try:
        with outbound.session(policy) as session, session.get(
                uri, timeout=timeout, stream=True, allow_redirects=False,
                headers={"Accept": "application/jwk-set+json, application/json",
                         "Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise JwksUnavailable(f"jwks_uri answered HTTP {response.status_code}")
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise JwksUnavailable("jwks_uri answered with a compressed body")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > JWKS_MAX_BYTES:
                raise JwksUnavailable(f"jwks_uri response is larger than {JWKS_MAX_BYTES} bytes")
            body = bytearray()
            while chunk := response.raw.read1(8192, decode_content=False):
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise JwksUnavailable(f"jwks_uri response is larger than {JWKS_MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise JwksUnavailable(f"jwks_uri did not answer within {timeout} seconds")
            return bytes(body)
    except outbound.AddressRefused:
        raise JwksUnavailable("jwks_uri refused: its host has an address that is not public") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as failure:
        raise JwksUnavailable(f"jwks_uri could not be fetched ({type(failure).__name__})") from None
