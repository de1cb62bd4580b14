"""create_app(settings=None): the one place that knows every room."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response
from sqlalchemy import event, text
from werkzeug.middleware.proxy_fix import ProxyFix

from idp.config import Settings, from_env

PACKAGE_DIR = Path(__file__).resolve().parent


ASSET_MARKERS = {"templates": "base.html", "static": "css/idp.css", "migrations": "env.py"}


def _asset_dir(name: str) -> str:
    """templates/, static/ or migrations/: inside the package in a wheel, or beside it in a
    checkout; recognised by a file each must hold, so a stray folder never wins."""
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if (candidate / ASSET_MARKERS[name]).is_file():
            return str(candidate)
    raise RuntimeError(f"cannot find the {name}/ folder")


def _engine_options(url: str) -> dict:
    """pool_pre_ping everywhere (a restarted database costs a reconnect, not a 500); for SQLite
    also a 30 s busy timeout, so concurrent writers wait for the lock instead of failing."""
    options: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30}
    return options


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers run beside the one writer; foreign keys make ON DELETE CASCADE real."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def worker_tasks(app: Flask) -> list:
    """What the outbox worker runs besides deliveries: the sweep that ends expired sessions (and
    so tells their apps through back-channel logout), and the one that deletes expired logins in
    progress (every anonymous GET /login makes one)."""
    from idp.authn.flow import purge_expired as purge_expired_logins
    from idp.authn.session import end_expired_sessions

    every = app.config["IDP_SETTINGS"].session_sweep_seconds
    return [(every, end_expired_sessions), (every, purge_expired_logins)]


def _start_worker_on_first_request(app: Flask) -> None:
    """IDP_OUTBOX_WORKER=inline: one worker thread per process, started by the first request (so
    operator commands, which also build the app, never start one)."""
    import threading

    from idp.outbox import start_worker_thread

    lock = threading.Lock()

    @app.before_request
    def _start_worker():
        if "idp.worker" in app.extensions:
            return
        with lock:
            if "idp.worker" not in app.extensions:
                app.extensions["idp.worker"] = stop = threading.Event()
                start_worker_thread(app, stop, poll_seconds=app.config["IDP_SETTINGS"].outbox_poll_seconds,
                                    periodic=worker_tasks(app))


def _sqlite_begin_before_savepoint(connection, _name) -> None:
    """pysqlite opens a transaction only before a data change, so a SAVEPOINT outside one is the
    outermost transaction and its RELEASE commits: a later rollback would leave the "nested"
    writes in place (a partial write). Opening the real transaction first keeps it nested."""
    if not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN")


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or from_env()
    logging.basicConfig(level=settings.log_level)
    app = Flask("idp", template_folder=_asset_dir("templates"), static_folder=_asset_dir("static"),
                instance_path=str(Path(settings.instance_path).resolve()))
    https = not settings.is_loopback_http
    host = settings.issuer.split("://", 1)[1].split("/", 1)[0]
    app.config.update(
        IDP_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.sqlalchemy_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.sqlalchemy_url),
        SESSION_COOKIE_NAME="__Host-idp_browser" if https else "idp_browser",
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=settings.session_absolute_lifetime,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,  # we send Referrer-Policy: no-referrer, so no Referer to check
        MAX_CONTENT_LENGTH=64 * 1024,
        TRUSTED_HOSTS=[host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"],
        PREFERRED_URL_SCHEME="https" if https else "http",
    )
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from idp.extensions import csrf, db, migrate
    from idp import models  # noqa: F401  (registers the tables)

    from idp.web.errors import refuse_nul_in_statement

    db.init_app(app)
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", refuse_nul_in_statement)
        if settings.sqlalchemy_url.startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_pragmas)
            event.listen(db.engine, "savepoint", _sqlite_begin_before_savepoint)
    migrate.init_app(app, db, directory=_asset_dir("migrations"))
    csrf.init_app(app)

    from idp.web.errors import init_errors
    from idp.web.headers import init_headers
    from idp.web.templating import init_templating
    from idp.authn.session import init_session_cookie

    init_errors(app)
    init_headers(app, https=https)
    init_templating(app)
    from idp.web.i18n import init_i18n
    init_i18n(app)
    from idp.web.branding import init_branding
    init_branding(app)
    from idp.authn.known_devices import init_device_cookie
    init_device_cookie(app)

    from idp.mail import init_mail
    init_mail(app)

    from idp.account import profile as _profile_pages  # noqa: F401  (its routes join the account blueprint)
    from idp.account import privacy as _privacy_pages  # noqa: F401  (likewise)
    from idp.account import sessions as _account_pages  # noqa: F401  (likewise)
    from idp.outbox import init_outbox

    init_outbox(app)
    init_session_cookie(app)  # after the outbox's hook, so it runs before it (see its docstring)
    if settings.runs_inline_worker:
        _start_worker_on_first_request(app)

    from idp.account.views import bp as account_bp
    from idp.authn import links as _link_pages  # (its routes join the authn blueprint)
    _link_pages.init_reset_requests(app)
    from idp.authn import terms as _terms_pages  # noqa: F401  (likewise)
    from idp.authn.views import bp as authn_bp
    from idp.federation.views import bp as federation_bp
    from idp.oauth.server import build_server
    from idp.oauth.views import bp as oauth_bp

    build_server(app)
    from idp.oauth.logout import init_logout
    from idp.oauth.pending import init_pending

    init_logout(app)
    init_pending(app)
    app.register_blueprint(authn_bp)
    app.register_blueprint(oauth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(federation_bp)

    @app.route("/")
    def index():
        from flask import redirect, url_for
        return redirect(url_for("account.home"))

    @app.route("/healthz")
    def healthz():
        return Response("ok\n", mimetype="text/plain")

    @app.route("/readyz")
    def readyz():
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any database failure means not ready
            logging.getLogger("idp").warning("readiness check failed", exc_info=True)
            return Response("database unavailable\n", status=503, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    @app.teardown_appcontext
    def _rollback_leftovers(exc):
        if exc is not None:
            db.session.rollback()

    return app
