"""Error pages for people: PageError, 4xx/5xx handlers, CSRF failures, the request id, and the
one rule for a NUL character (refused wherever it comes from)."""
from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, SecurityError

from idp.security.tokens import random_token
from idp.web.headers import keep_forms_on_origin
from idp.web.templating import N_
from idp.web.templating import gettext as _

log = logging.getLogger("idp.web")


class PageError(Exception):
    """An error a person reads on our page: one sentence saying what to do next."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}  # e.g. Retry-After with a 429


class NulInput(ValueError):
    """A NUL character in what a request sent: in a parameter, the path or a JSON body (refused
    before any view runs), or in a value decoded from inside one (a Basic header, a JWT header or
    claim) on its way into an SQL statement. PostgreSQL cannot store NUL in text and no protocol
    value contains one, so it is a bad request on both databases, never a 500."""


UNHANDLED = N_("Your request could not be handled. Go back and try again.")
NUL_MESSAGE = "a request value contains a NUL character"
# Endpoints that answer in JSON: RFC 6749 5.2 style (token, revocation RFC 7009 2.2.1,
# introspection RFC 7662 2.3, client configuration RFC 7592), RFC 7591 3.2.2 for registration, and
# RFC 6750 3.1 for UserInfo. Named, not imported: oauth is a higher room.
JSON_ERROR_ENDPOINTS = {"oauth.token": "invalid_request", "oauth.revoke": "invalid_request",
                        "oauth.introspect": "invalid_request", "oauth.configure_client": "invalid_request",
                        "oauth.register_client": "invalid_client_metadata", "oauth.userinfo": "invalid_request"}


def refuse_nul_in_statement(_conn, _cursor, _statement, parameters, _context, _executemany) -> None:
    """before_cursor_execute: the last line of defence for a NUL decoded from inside a request."""
    rows = parameters if _executemany else (parameters,)
    for row in rows or ():
        values = row.values() if isinstance(row, dict) else row if isinstance(row, (list, tuple)) else (row,)
        if any(isinstance(value, str) and "\x00" in value for value in values):
            raise NulInput(NUL_MESSAGE)


def _request_has_nul() -> bool:
    try:
        return _has_nul()
    except RequestEntityTooLarge:
        return False  # the endpoint refuses the size itself, in its own error format


def _has_nul() -> bool:
    if "\x00" in request.path:
        return True
    if any("\x00" in key or "\x00" in value for key, value in request.args.items(multi=True)):
        return True
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return any("\x00" in key or "\x00" in value for key, value in request.form.items(multi=True))
    if request.is_json:
        body = request.get_data(cache=True)
        return b"\x00" in body or b"\\u0000" in body  # raw, or JSON's escape for it
    return False


def request_id() -> str:
    if "request_id" not in g:
        g.request_id = random_token(9)
    return g.request_id


def _page(message: str, status: int):
    keep_forms_on_origin()  # the page that was to hold the form is not shown
    return render_template("errors/page.html", message=message, status=status,
                           request_id=request_id()), status


def init_errors(app: Flask) -> None:
    @app.before_request
    def _assign_request_id():
        request_id()

    @app.before_request
    def _refuse_nul():
        if _request_has_nul():
            raise NulInput(NUL_MESSAGE)

    @app.errorhandler(NulInput)
    def _nul_input(_error: NulInput):
        code = JSON_ERROR_ENDPOINTS.get(request.endpoint)
        if code is None:
            return _page(_("What you sent contains a character that is not allowed. Check it and try again."), 400)
        response = jsonify(error=code, error_description=NUL_MESSAGE)
        response.status_code = 400
        if request.endpoint == "oauth.userinfo":
            response.headers["WWW-Authenticate"] = f'Bearer error="{code}", error_description="{NUL_MESSAGE}"'
        return response

    @app.errorhandler(PageError)
    def _page_error(error: PageError):
        return *_page(error.message, error.status), error.headers

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return _page(_("This form has expired or was sent from elsewhere. Go back, reload the page and try again."), 400)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code and error.code < 400:
            return error
        if isinstance(error, SecurityError):
            # An untrusted Host header: no URL can be built for this request, so no page either.
            return Response("Bad request\n", status=400, mimetype="text/plain")
        messages = {
            404: N_("This page does not exist. Check the address."),
            405: N_("This page cannot be used that way. Go back and try again."),
            413: N_("What you sent is too large."),
        }
        body, status = _page(_(messages.get(error.code, UNHANDLED)), error.code or 400)
        allow = dict(error.get_headers()).get("Allow")
        return body, status, ({"Allow": allow} if allow else {})

    @app.errorhandler(Exception)
    def _server_error(error: Exception):
        log.exception("unhandled error request_id=%s path=%s", request_id(), request.path)
        keep_forms_on_origin()
        return render_template("errors/500.html", request_id=request_id()), 500
