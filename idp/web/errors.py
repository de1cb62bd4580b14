"""Error pages for people: PageError, 4xx/5xx handlers, CSRF failures, and the request id."""
from __future__ import annotations

import logging

from flask import Flask, Response, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, SecurityError

from idp.security.tokens import random_token

log = logging.getLogger("idp.web")


class PageError(Exception):
    """An error a person reads on our page: one sentence saying what to do next."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}  # e.g. Retry-After with a 429


def request_id() -> str:
    if "request_id" not in g:
        g.request_id = random_token(9)
    return g.request_id


def _page(message: str, status: int):
    return render_template("errors/page.html", message=message, status=status,
                           request_id=request_id()), status


def init_errors(app: Flask) -> None:
    @app.before_request
    def _assign_request_id():
        request_id()

    @app.errorhandler(PageError)
    def _page_error(error: PageError):
        return *_page(error.message, error.status), error.headers

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return _page("This form has expired or was sent from elsewhere. Go back, reload the page and try again.", 400)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code and error.code < 400:
            return error
        if isinstance(error, SecurityError):
            # An untrusted Host header: no URL can be built for this request, so no page either.
            return Response("Bad request\n", status=400, mimetype="text/plain")
        messages = {
            404: "This page does not exist. Check the address.",
            405: "This page cannot be used that way. Go back and try again.",
            413: "What you sent is too large.",
        }
        body, status = _page(messages.get(error.code, "Your request could not be handled. Go back and try again."),
                             error.code or 400)
        allow = dict(error.get_headers()).get("Allow")
        return body, status, ({"Allow": allow} if allow else {})

    @app.errorhandler(Exception)
    def _server_error(error: Exception):
        log.exception("unhandled error request_id=%s path=%s", request_id(), request.path)
        return render_template("errors/500.html", request_id=request_id()), 500
