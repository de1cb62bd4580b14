"""The operator command `idp`: serve, db, clients, users, keys, audit, seed-demo."""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

import click
from flask_migrate import upgrade as alembic_upgrade

from idp import create_app


def _app():
    app = create_app()
    app.app_context().push()
    return app


def _emit(data, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif isinstance(data, list):
        for row in data:
            click.echo("  ".join(f"{k}={v}" for k, v in row.items()))
    else:
        for key, value in data.items():
            click.echo(f"{key}: {value}")


@click.group(help="idp: an OpenID Connect / OAuth 2.0 identity provider.")
def main():
    pass


# --- serve -----------------------------------------------------------------------------------
@main.command(help="Serve HTTP with the production WSGI server (IDP_* settings from the environment).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--server", type=click.Choice(["granian", "gunicorn"]), default="granian", show_default=True,
              help="production WSGI server (bench/README.md says why)")
@click.option("--workers", default=None, type=int, help="worker processes  [default: CPU count]")
@click.option("--threads", default=4, show_default=True, type=int, help="threads per worker")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="one log line per request (off: the reverse proxy logs requests, and this halves JWKS throughput)")
@click.option("--dev", is_flag=True, help="Use Werkzeug's single-process development server instead.")
def serve(host, port, server, workers, threads, access_log, dev):
    app = _app()
    from idp.keys import ensure_key
    ensure_key(app.config["IDP_SETTINGS"])
    if dev:
        app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
        return
    workers = str(workers or os.cpu_count() or 1)
    import importlib.util
    if importlib.util.find_spec(server) is None:
        raise click.ClickException(f"{server} is not installed (pip install {server}), or choose another --server")
    if server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
                "--workers", workers, "--blocking-threads", str(threads), "--no-ws", "--respawn-failed-workers"]
        argv += ["--access-log"] if access_log else []
    else:
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", workers,
                "--threads", str(threads)]
        argv += ["--access-logfile", "-"] if access_log else []
    os.execvp(argv[0], argv + ["idp.wsgi:app"])


# --- db --------------------------------------------------------------------------------------
@main.group(help="Database schema.")
def db():
    pass


@db.command("upgrade", help="Apply every pending migration (safe to run repeatedly).")
def db_upgrade():
    _app()
    alembic_upgrade()
    click.echo("database is at the latest revision")


# --- clients ---------------------------------------------------------------------------------
@main.group(help="OAuth clients (relying parties).")
def clients():
    pass


@clients.command("create", help="Register a client; a confidential client's secret is printed once.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Repeat for several.")
@click.option("--public", is_flag=True, help="No secret; PKCE required (browser or native app).")
@click.option("--first-party", is_flag=True, help="Trusted: consent screen skipped.")
@click.option("--require-mfa", is_flag=True, help="Every login for this client reaches two factors (urn:idp:acr:mfa).")
@click.option("--grant-type", "grant_types", multiple=True,
              type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]))
@click.option("--scope", default="openid profile email offline_access", show_default=True)
@click.option("--no-pkce", is_flag=True, help="Confidential clients only: do not require PKCE.")
@click.option("--client-id", default=None, help="Choose the client_id (default: random).")
@click.option("--json", "as_json", is_flag=True)
def clients_create(name, redirect_uris, public, first_party, require_mfa, grant_types, scope, no_pkce, client_id,
                   as_json):
    from idp.extensions import db as database
    from idp.oauth.clients import ClientRejected, create_client, describe, find_client
    _app()
    if client_id and find_client(client_id):
        raise click.ClickException(f"a client with id {client_id!r} exists already")
    try:
        client, secret = create_client(name=name, redirect_uris=list(redirect_uris), public=public,
                                       first_party=first_party, grant_types=list(grant_types) or None,
                                       scope=scope, require_pkce=not no_pkce, client_id=client_id,
                                       require_mfa=require_mfa)
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    database.session.commit()
    data = describe(client)
    if secret:
        data["client_secret"] = secret
    _emit(data, as_json)
    if secret and not as_json:
        click.echo("Store the client_secret now: it is not shown again.", err=True)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
def clients_list(as_json):
    from idp.extensions import db as database
    from idp.models import Client
    from idp.oauth.clients import describe
    _app()
    rows = database.session.scalars(database.select(Client).order_by(Client.id))
    _emit([describe(c) for c in rows], as_json)


@clients.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def clients_show(client_id, as_json):
    from idp.oauth.clients import describe, find_client
    _app()
    client = find_client(client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id!r}")
    _emit(describe(client), as_json)


@clients.command("delete")
@click.argument("client_id")
def clients_delete(client_id):
    from idp import audit
    from idp.extensions import db as database
    from idp.oauth.clients import find_client
    _app()
    client = find_client(client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id!r}")
    audit.record("oauth.client.deleted", client=client_id)
    database.session.delete(client)
    database.session.commit()
    click.echo(f"deleted {client_id}")


@clients.command("rotate-secret", help="Issue a new secret (printed once); the old one stops working.")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def clients_rotate_secret(client_id, as_json):
    from idp.extensions import db as database
    from idp.oauth.clients import ClientRejected, find_client, rotate_secret
    _app()
    client = find_client(client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id!r}")
    try:
        secret = rotate_secret(client)
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    database.session.commit()
    _emit({"client_id": client_id, "client_secret": secret}, as_json)


# --- users -----------------------------------------------------------------------------------
def _user_dict(u) -> dict:
    return {"subject": u.subject, "username": u.username, "email": u.email, "disabled": u.disabled,
            "created_at": u.created_at.isoformat() if u.created_at else None}


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@main.group(help="People.")
def users():
    pass


@users.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True)
def users_create(username, email, password_stdin, as_json):
    from idp import audit
    from idp.extensions import db as database
    from idp.users.directory import create_user
    from idp.users.errors import RegistrationRejected
    _app()
    try:
        user = create_user(username, email, _read_password(password_stdin))
    except RegistrationRejected as rejected:
        raise click.ClickException("; ".join(f"{k}: {v}" for k, v in rejected.errors.items())) from None
    audit.record("users.user.created", user=user, via="cli")
    database.session.commit()
    _emit(_user_dict(user), as_json)


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
def users_list(as_json):
    from idp.extensions import db as database
    from idp.models import User
    _app()
    _emit([_user_dict(u) for u in database.session.scalars(database.select(User).order_by(User.id))], as_json)


def _find_user(login):
    from idp.users.directory import find_by_login
    user = find_by_login(login)
    if user is None:
        raise click.ClickException(f"no user {login!r}")
    return user


@users.command("disable", help="Block sign-in and end every session of this person.")
@click.argument("login")
def users_disable(login):
    from idp import audit
    from idp.extensions import db as database
    from idp.models import SsoSession
    _app()
    user = _find_user(login)
    user.disabled = True
    database.session.execute(database.delete(SsoSession).where(SsoSession.user_id == user.id))
    audit.record("users.user.disabled", user=user, via="cli")
    database.session.commit()
    click.echo(f"disabled {user.username}")


@users.command("enable")
@click.argument("login")
def users_enable(login):
    from idp import audit
    from idp.extensions import db as database
    _app()
    user = _find_user(login)
    user.disabled = False
    audit.record("users.user.enabled", user=user, via="cli")
    database.session.commit()
    click.echo(f"enabled {user.username}")


@users.command("set-password")
@click.argument("login")
@click.option("--password-stdin", is_flag=True)
def users_set_password(login, password_stdin):
    from idp.extensions import db as database
    from idp.users.directory import set_password
    from idp.users.errors import RegistrationRejected
    _app()
    user = _find_user(login)
    try:
        set_password(user, _read_password(password_stdin))
    except RegistrationRejected as rejected:
        raise click.ClickException(rejected.errors["password"]) from None
    database.session.commit()
    click.echo(f"password changed for {user.username}")


# --- keys ------------------------------------------------------------------------------------
@main.group(help="Token signing keys.")
def keys():
    pass


@keys.command("rotate", help="Make a new active key; earlier keys stay published until their tokens expire.")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None)
def keys_rotate(alg):
    from idp import audit
    from idp.extensions import db as database
    from idp.keys import rotate
    app = _app()
    row = rotate(app.config["IDP_SETTINGS"], alg)
    audit.record("keys.key.rotated", kid=row.kid, alg=row.alg)
    database.session.commit()
    click.echo(f"new active key {row.kid} ({row.alg})")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json):
    from idp.keys import published_keys
    app = _app()
    _emit([{"kid": k.kid, "alg": k.alg, "active": k.retired_at is None, "created_at": k.created_at.isoformat()}
           for k in published_keys(app.config["IDP_SETTINGS"])], as_json)


# --- audit -----------------------------------------------------------------------------------
@main.group(help="The audit trail.")
def audit():
    pass


@audit.command("list", help="Print events as JSON lines.")
@click.option("--user", "login", default=None, help="Username or email.")
@click.option("--type", "type_prefix", default=None, help="Event type or prefix, e.g. authn.login")
@click.option("--since", default=None, help="ISO 8601 date or time (UTC when no zone).")
@click.option("--limit", default=1000, show_default=True, type=int)
def audit_list(login, type_prefix, since, limit):
    from idp import audit as audit_log
    _app()
    since_dt = None
    if since:
        try:
            since_dt = datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter("use ISO 8601, e.g. 2026-12-01 or 2026-12-01T10:00") from None
        if since_dt.tzinfo is None:
            since_dt = since_dt.replace(tzinfo=timezone.utc)
    user_id = _find_user(login).id if login else None
    for event in audit_log.events(user_id=user_id, type_prefix=type_prefix, since=since_dt, limit=limit):
        click.echo(json.dumps(audit_log.as_dict(event), separators=(",", ":")))


# --- demo ------------------------------------------------------------------------------------
DEMO_CONFIDENTIAL = "demo-confidential"
DEMO_PUBLIC = "demo-public"


@main.command("seed-demo", help="Create the two demo clients once (idempotent) and print how to use them.")
def seed_demo():
    from idp.extensions import db as database
    from idp.keys import ensure_key
    from idp.oauth.clients import create_client, find_client, rotate_secret
    app = _app()
    settings = app.config["IDP_SETTINGS"]
    ensure_key(settings)
    lines = []
    confidential = find_client(DEMO_CONFIDENTIAL)
    if confidential is None:
        confidential, secret = create_client(
            name="Demo web app", client_id=DEMO_CONFIDENTIAL,
            redirect_uris=["http://127.0.0.1:8000/callback", "http://localhost:8000/callback"],
            grant_types=["authorization_code", "refresh_token", "client_credentials"])
        secret_path = os.path.join(app.instance_path, "demo_client_secret")
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret)
    if find_client(DEMO_PUBLIC) is None:
        create_client(name="Demo single-page app", client_id=DEMO_PUBLIC, public=True,
                      redirect_uris=["http://127.0.0.1:8001/callback", "http://localhost:8001/callback"])
    database.session.commit()
    secret_path = os.path.join(app.instance_path, "demo_client_secret")
    if os.path.exists(secret_path):
        with open(secret_path) as handle:
            secret = handle.read().strip()
    else:  # the file was removed: issue a fresh secret rather than lose access
        secret = rotate_secret(confidential)
        database.session.commit()
    lines += [
        f"Issuer:          {settings.issuer}",
        f"Discovery:       {settings.issuer}/.well-known/openid-configuration",
        f"Sign in / up:    {settings.issuer}/login",
        f"Confidential client: client_id={DEMO_CONFIDENTIAL} client_secret={secret}",
        "                     redirect_uri=http://127.0.0.1:8000/callback",
        f"Public (PKCE) client: client_id={DEMO_PUBLIC} redirect_uri=http://127.0.0.1:8001/callback",
    ]
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
