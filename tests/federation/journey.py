"""A person's browser going from the downstream (our live_server) to an upstream and back, over
real HTTP, one redirect at a time, the way tests/helpers/rp.py's Browser does on one host."""
from __future__ import annotations

from urllib.parse import urljoin

import requests

from tests.helpers.forms import csrf_token, hidden

TIMEOUT = 15


class Person:
    def __init__(self):
        self.http = requests.Session()

    def get(self, url, **kw):
        return self.http.get(url, allow_redirects=False, timeout=TIMEOUT, **kw)

    def post(self, url, **kw):
        return self.http.post(url, allow_redirects=False, timeout=TIMEOUT, **kw)

    def follow(self, response, until):
        """Follow redirects until the next one would go to a URL for which until(url) is true;
        returns (that URL or None, the last response)."""
        for _ in range(12):
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303) or not location:
                return None, response
            url = urljoin(response.url, location)
            if until(url):
                return url, response
            response = self.get(url)
        raise AssertionError("too many redirects")


def to_upstream_login(person: Person, start_url: str, upstream_issuer: str):
    """From a URL on the downstream to the upstream's login page (200)."""
    _, page = person.follow(person.get(start_url), lambda url: False)
    assert page.status_code == 200 and page.url.startswith(f"{upstream_issuer}/login"), (page.status_code, page.url)
    return page


def sign_in_upstream(person: Person, page, user: dict, decision: str | None = "allow"):
    """Post the upstream's login form (and answer its consent page); the URL it sends the
    browser to next, which is the downstream's callback."""
    issuer = page.url.split("/login", 1)[0]
    posted = person.post(f"{issuer}/login", data={"csrf_token": csrf_token(page.text), "login": user["username"],
                         "password": user["password"], "next": hidden(page.text, "next")})
    assert posted.status_code == 303, posted.status_code
    url, response = person.follow(posted, lambda url: not url.startswith(issuer))
    if url is None and 'name="pending_id"' in response.text:  # the upstream's consent page
        response = person.post(f"{issuer}/authorize/consent", data={
            "csrf_token": csrf_token(response.text), "pending_id": hidden(response.text, "pending_id"),
            "sid": hidden(response.text, "sid"), "decision": decision})
        url, response = person.follow(response, lambda url: not url.startswith(issuer))
    assert url is not None, (response.status_code, response.text[:300])
    return url


def federated(person: Person, downstream: str, provider_id: str, upstream_issuer: str, user: dict,
              next_path: str | None = None, decision: str | None = "allow"):
    """Start at the downstream, sign in at the upstream; returns the callback URL (not yet visited)."""
    start = f"{downstream}/federation/{provider_id}/start" + (f"?next={next_path}" if next_path else "")
    page = to_upstream_login(person, start, upstream_issuer)
    return sign_in_upstream(person, page, user, decision)


def answer_totp(person: Person, downstream: str, secret: str):
    """Answer the downstream's TOTP step with the code for the (pinned) clock; the response."""
    from tests.helpers.mfa import code_at

    page = person.get(f"{downstream}/login/totp")
    assert page.status_code == 200, page.status_code
    return person.post(f"{downstream}/login/totp", data={"csrf_token": csrf_token(page.text),
                                                         "code": code_at(secret)})


def sign_in_with_totp(person: Person, downstream: str, user: dict, secret: str, next_path: str = "/account"):
    """Sign in at the downstream with password and TOTP; the last response (303 to next_path)."""
    login_page = person.get(f"{downstream}/login?next={next_path}")
    step = person.post(f"{downstream}/login", data={"csrf_token": csrf_token(login_page.text),
                                                   "login": user["username"], "password": user["password"],
                                                   "next": next_path})
    assert step.status_code == 303 and step.headers["Location"] == "/login/totp", step.status_code
    done = answer_totp(person, downstream, secret)
    assert done.status_code == 303, done.status_code
    return done
