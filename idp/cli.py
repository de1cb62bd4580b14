"""The operator command `idp`: serve, db, clients, users, providers, keys, audit, purge, worker, seed-demo."""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
from flask_migrate import upgrade as alembic_upgrade

from idp import create_app


def _app():
    app = create_app()
    app.app_context().push()
    return app


def _client(client_id: str):
    """Build the app and return the client, or stop with "no client" (every clients command)."""
    from idp.oauth.clients import find_client
    _app()
    client = find_client(client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id!r}")
    return client


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
    from idp.keys import ensure_keys
    ensure_keys(app.config["IDP_SETTINGS"])
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
def _read_json(handle) -> dict:
    try:
        return json.load(handle)
    except ValueError:
        raise click.ClickException(f"{handle.name} does not hold JSON") from None


@main.group(help="OAuth clients (relying parties).")
def clients():
    pass


def _logout_option(ctx, param, value):
    """Collect the logout options of `clients create` in ctx.meta for set_logout()."""
    ctx.meta.setdefault("idp.logout", {})[param.name] = list(value) if param.multiple else value
    return value


@clients.command("create", help="Register a client; a confidential client's secret is printed once.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Repeat for several.")
@click.option("--public", is_flag=True, help="No secret; PKCE required (browser or native app).")
@click.option("--auth-method", type=click.Choice(["client_secret_basic", "client_secret_post", "client_secret_jwt",
                                                 "private_key_jwt", "none"]),
              help="How the client authenticates at /token (default client_secret_basic; --public means none).")
@click.option("--jwks", "jwks_file", type=click.File("r"), help="private_key_jwt: a file with the client's public JWK Set.")
@click.option("--jwks-uri", help="private_key_jwt: https URL where the client publishes its public JWK Set.")
@click.option("--signing-alg", type=click.Choice(["RS256", "PS256", "ES256", "HS256"]),
              help="private_key_jwt or client_secret_jwt: the only alg accepted for this client's assertions.")
@click.option("--first-party", is_flag=True, help="Trusted: consent screen skipped.")
@click.option("--require-mfa", is_flag=True, help="Every login for this client reaches two factors (urn:idp:acr:mfa).")
@click.option("--grant-type", "grant_types", multiple=True,
              type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]))
@click.option("--scope", default="openid profile email offline_access", show_default=True)
@click.option("--no-pkce", is_flag=True, help="Confidential clients only: do not require PKCE.")
@click.option("--resource-server", is_flag=True,
              help="Confidential clients only: may introspect access tokens issued to any client (RFC 7662).")
@click.option("--subject-type", type=click.Choice(["public", "pairwise"]), default="public", show_default=True,
              help="pairwise: each sector (a host) sees its own opaque sub for a person (OIDC Core 8.1).")
@click.option("--sector", default=None,
              help="pairwise: the sector host (default: the single host of https redirect URIs; required when "
                   "they are on several hosts, use a private-use scheme or a loopback address).")
@click.option("--access-token-ttl", type=int, help="Seconds, at most 86400 (default: IDP_TOKEN_ACCESS_TTL).")
@click.option("--id-token-ttl", type=int, help="Seconds, at most 86400 (default: IDP_TOKEN_ID_TTL).")
@click.option("--refresh-token-ttl", type=int,
              help="Absolute seconds of a refresh token family, at most a year (default: IDP_TOKEN_REFRESH_TTL).")
@click.option("--refresh-token-idle-ttl", type=int,
              help="Seconds a refresh token stays usable unused, at most the absolute lifetime "
                   "(default: IDP_TOKEN_REFRESH_IDLE_TTL).")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True, expose_value=False,
              callback=_logout_option, help="Where RP-initiated logout may send the person back (exact match; "
                                            "same rules as redirect URIs). Repeat for several.")
@click.option("--backchannel-logout-uri", expose_value=False, callback=_logout_option,
              help="https URL (http on loopback) that receives back-channel logout tokens.")
@click.option("--backchannel-logout-session-required", is_flag=True, expose_value=False, callback=_logout_option,
              help="The client needs `sid` in logout tokens (always sent).")
@click.option("--client-id", default=None, help="Choose the client_id (default: random).")
@click.option("--json", "as_json", is_flag=True)
def clients_create(name, redirect_uris, public, auth_method, jwks_file, jwks_uri, signing_alg, first_party, require_mfa,
                   grant_types, scope, no_pkce, resource_server, client_id, as_json, subject_type, sector,
                   **token_lifetimes):
    from idp.extensions import db as database
    from idp.oauth.clients import ClientRejected, create_client, describe, find_client, set_auth_method
    if public and auth_method not in (None, "none"):
        raise click.ClickException("--public means --auth-method none")
    if (jwks_file or jwks_uri or signing_alg) and auth_method is None:
        raise click.ClickException("--jwks, --jwks-uri and --signing-alg need --auth-method")
    jwks = _read_json(jwks_file) if jwks_file else None
    public = public or auth_method == "none"
    _app()
    if client_id and find_client(client_id):
        raise click.ClickException(f"a client with id {client_id!r} exists already")
    try:
        client, secret = create_client(name=name, redirect_uris=list(redirect_uris), public=public,
                                       first_party=first_party, grant_types=list(grant_types) or None,
                                       scope=scope, require_pkce=not no_pkce, client_id=client_id,
                                       resource_server=resource_server, require_mfa=require_mfa)
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    from idp.oauth.clients import set_subject_type, set_token_lifetimes
    try:
        set_subject_type(client, subject_type, sector)
        set_token_lifetimes(client, **token_lifetimes)
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    if auth_method is not None:
        try:
            secret = set_auth_method(client, auth_method, jwks=jwks, jwks_uri=jwks_uri, signing_alg=signing_alg)
        except ClientRejected as rejected:
            raise click.ClickException(str(rejected)) from None
    from idp.oauth.clients import set_logout
    try:
        set_logout(client, **click.get_current_context().meta.get("idp.logout", {}))
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
    from idp.oauth.clients import describe
    client = _client(client_id)
    _emit(describe(client), as_json)


@clients.command("delete")
@click.argument("client_id")
def clients_delete(client_id):
    from idp import audit
    from idp.extensions import db as database
    client = _client(client_id)
    audit.record("oauth.client.deleted", client=client_id)
    database.session.delete(client)
    database.session.commit()
    click.echo(f"deleted {client_id}")


@clients.command("rotate-secret", help="Issue a new secret (printed once); the old one stops working.")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def clients_rotate_secret(client_id, as_json):
    from idp.extensions import db as database
    from idp.oauth.clients import ClientRejected, rotate_secret
    client = _client(client_id)
    try:
        secret = rotate_secret(client)
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    database.session.commit()
    _emit({"client_id": client_id, "client_secret": secret}, as_json)


@clients.command("set-logo", help="Show this image (PNG, JPEG, GIF or WebP, at most 100 KiB) on the consent page.")
@click.argument("client_id")
@click.argument("image", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--remove", is_flag=True, help="Show no logo.")
def clients_set_logo(client_id, image, remove):
    from idp import audit
    from idp.extensions import db as database
    from idp.oauth.clients import ClientRejected, set_logo
    client = _client(client_id)
    if not remove and image is None:
        raise click.ClickException("give an image file, or --remove")
    try:
        set_logo(client, None if remove else Path(image).read_bytes())
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    audit.record("oauth.client.changed", client=client, change="logo_removed" if remove else "logo_set")
    database.session.commit()
    click.echo(f"{client_id}: logo {'removed' if remove else 'set'}")


@clients.command("verify", help="Mark a dynamically registered client as checked by you (its name, links and "
                                "redirect URIs are what they claim), so the consent page no longer calls it unverified.")
@click.argument("client_id")
@click.option("--withdraw", is_flag=True, help="Mark it unverified again.")
def clients_verify(client_id, withdraw):
    from idp.extensions import db as database
    from idp.oauth.clients import ClientRejected, set_verified
    client = _client(client_id)
    try:
        changed = set_verified(client, not withdraw)
    except ClientRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    database.session.commit()
    state = "unverified" if withdraw else "verified"
    click.echo(f"{client_id}: {state}" if changed else f"{client_id}: already {state}")


@clients.command("initial-token", help="Print a new initial access token for dynamic client registration "
                                         "(POST /oauth/register); it registers one client, then it is used up.")
@click.option("--expires-in", default=86400, show_default=True, type=click.IntRange(0, 10 * 365 * 86400),
              help="seconds until it expires (0: never)")
@click.option("--note", default=None, help="who or what it is for (kept with it, up to 256 characters)")
@click.option("--json", "as_json", is_flag=True)
def clients_initial_token(expires_in, note, as_json):
    from idp.extensions import db as database
    from idp.oauth.initial_tokens import issue_initial_access_token
    app = _app()
    if note is not None and len(note) > 256:
        raise click.BadParameter("at most 256 characters", param_hint="--note")
    row, token = issue_initial_access_token(expires_in or None, note)
    database.session.commit()
    mode = app.config["IDP_SETTINGS"].client_registration
    _emit({"initial_access_token": token, "expires_at": row.expires_at.isoformat() if row.expires_at else None,
           "note": note, "registration_endpoint": f"{app.config['IDP_SETTINGS'].issuer}/oauth/register"}, as_json)
    if not as_json:
        click.echo("Store the initial_access_token now: it is not shown again.", err=True)
    if mode == "open":
        click.echo("Note: IDP_CLIENT_REGISTRATION is open, so this token is not needed; a registration carrying "
                   "it is not counted against the registration rate limits.", err=True)
    elif mode != "protected":
        click.echo(f"Note: IDP_CLIENT_REGISTRATION is {mode}, so this token is not accepted.", err=True)


# --- users -----------------------------------------------------------------------------------
def _user_dict(u) -> dict:
    return {"subject": u.subject, "username": u.username, "email": u.email, "disabled": u.disabled,
            "created_at": u.created_at.isoformat() if u.created_at else None}


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")  # one line ending, LF or CRLF
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
    from idp.authn.session import end_sessions_of
    from idp.extensions import db as database
    _app()
    user = _find_user(login)
    user.disabled = True
    ended = end_sessions_of(user.id, reason="admin")  # the apps hear of it (back-channel logout)
    audit.record("users.user.disabled", user=user, via="cli", sessions_ended=ended)
    database.session.commit()
    _deliver_now()
    click.echo(f"disabled {user.username}; {ended} session(s) ended")


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


@users.command("set-password", help="Set a new password for an account being recovered or handed over: every "
                                     "session of the person ends and every grant is revoked (offline_access ones "
                                     "too), so nothing signed in with the old password keeps working.")
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--keep-sessions", is_flag=True,
              help="Only change the password: the person's sessions and the apps' grants stay.")
def users_set_password(login, password_stdin, keep_sessions):
    from idp.authn.session import end_sessions_of
    from idp.extensions import db as database
    from idp.oauth.logout import revoke_grants
    from idp.users import notices
    from idp.users.directory import set_password
    from idp.users.errors import RegistrationRejected
    _app()
    user = _find_user(login)
    password = _read_password(password_stdin)
    ended = revoked = 0
    try:
        if not keep_sessions:
            revoked = revoke_grants(user, "password_set")
            ended = end_sessions_of(user.id, reason="admin")  # the apps hear of it (back-channel logout)
        set_password(user, password, via="cli", sessions_ended=ended, grants_revoked=revoked)
    except RegistrationRejected as rejected:
        database.session.rollback()  # nothing ends for a refused password
        raise click.ClickException(rejected.errors["password"]) from None
    # The person hears of it, as after their own change.
    notices.notify_sign_in_change(user, notices.PASSWORD_CHANGED, *([notices.ALL_SESSIONS_ENDED] if ended else []),
                                  *([notices.APPS_DISCONNECTED] if revoked else []))
    database.session.commit()
    _deliver_now()
    if keep_sessions:
        click.echo(f"password changed for {user.username}; sessions and grants kept (--keep-sessions)")
    else:
        click.echo(f"password changed for {user.username}; {ended} session(s) ended, {revoked} grant(s) revoked")


# --- keys ------------------------------------------------------------------------------------
@main.group(help="Token signing keys.")
def keys():
    pass


@keys.command("rotate", help="Publish a new key for each algorithm (RS256, and IDP_KEYS_ALG) now and sign with "
                             "them after IDP_KEYS_CACHE_SECONDS plus the JWKS max-age (60 s), when every instance and "
                             "every relying party's copy of the JWKS holds them; earlier keys stay published until "
                             "their tokens expire. Keys of an algorithm no longer in use stop signing then too.")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None,
              help="Rotate only this algorithm's key (RS256, or IDP_KEYS_ALG).")
@click.option("--now", "immediate", is_flag=True,
              help="Sign with the new keys at once; other instances may publish them up to IDP_KEYS_CACHE_SECONDS "
                   "later. For a key that leaked, use `idp keys revoke` instead.")
def keys_rotate(alg, immediate):
    from idp import audit
    from idp.extensions import db as database
    from idp.keys import rotate
    app = _app()
    settings = app.config["IDP_SETTINGS"]
    try:
        rows = rotate(settings, alg, immediate=immediate)
    except ValueError:
        raise click.ClickException(f"no {alg} keys are in use: IDP_KEYS_ALG is {settings.keys_alg}") from None
    for row in rows:
        audit.record("keys.key.rotated", kid=row.kid, alg=row.alg, immediate=immediate)
    database.session.commit()
    for row in rows:
        when = "now" if row.activates_at is None else f"from {row.activates_at.isoformat()}"
        click.echo(f"new key {row.kid} ({row.alg}) is published and signs {when}")


@keys.command("revoke", help="Withdraw a key that leaked: it leaves the JWKS and is no longer trusted, here at "
                             "once and on other instances within IDP_KEYS_CACHE_SECONDS, so every token it signed "
                             "(genuine ones too) stops being accepted; a key that signs is first replaced by a new "
                             "key of its algorithm that signs at once. People stay signed in; apps get new tokens with their refresh "
                             "tokens or a new login.")
@click.argument("kid")
def keys_revoke(kid):
    from idp import audit
    from idp.extensions import db as database
    from idp.keys import revoke
    app = _app()
    try:
        replacement = revoke(app.config["IDP_SETTINGS"], kid)
    except LookupError:
        raise click.ClickException(f"no published key {kid!r} (see `idp keys list`)") from None
    if replacement is not None:
        audit.record("keys.key.rotated", kid=replacement.kid, alg=replacement.alg, immediate=True)
    audit.record("keys.key.revoked", kid=kid)
    database.session.commit()
    click.echo(f"key {kid} is revoked" + (f"; new key {replacement.kid} ({replacement.alg}) signs now"
                                          if replacement is not None else ""))


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json):
    from idp.clock import now
    from idp.keys import published_keys, state_of
    app = _app()
    moment = now()
    _emit([{"kid": k.kid, "alg": k.alg, "state": state_of(k, moment), "active": state_of(k, moment) == "signing",
            "created_at": k.created_at.isoformat(),
            "activates_at": k.activates_at.isoformat() if k.activates_at else None,
            "retired_at": k.retired_at.isoformat() if k.retired_at else None}
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
    user = _find_user(login) if login else None
    for event in audit_log.events(user=user, type_prefix=type_prefix, since=since_dt, limit=limit):
        click.echo(json.dumps(audit_log.as_dict(event), separators=(",", ":")))


# --- worker --------------------------------------------------------------------------------
def _deliver_now() -> None:
    """Send what this command queued (back-channel logout tokens) before exiting; whatever fails
    is retried by `idp worker`."""
    from flask import current_app

    from idp.outbox import deliver_enqueued
    deliver_enqueued(current_app.config["IDP_SETTINGS"].backchannel_logout_timeout + 1)


@main.command(help="Deliver outbox messages (back-channel logout) with retries and end expired sessions. "
                   "Run one or more beside the web processes; stops cleanly on SIGTERM or Ctrl-C.")
@click.option("--once", is_flag=True, help="Sweep and deliver what is due now, then exit (for cron).")
def worker(once):
    import signal
    import threading

    from idp import worker_tasks
    from idp.outbox import run_once, work
    app = _app()
    settings = app.config["IDP_SETTINGS"]
    if once:
        for _interval, task in worker_tasks(app):
            task()
        delivered, failed = run_once(limit=1000)
        click.echo(f"delivered {delivered}, failed {failed}")
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo("idp worker: delivering (SIGTERM stops)", err=True)
    work(app, stop, poll_seconds=settings.outbox_poll_seconds, periodic=worker_tasks(app))
    click.echo("idp worker: stopped", err=True)
# --- providers -------------------------------------------------------------------------------
@main.group(help="Upstream identity providers people may sign in with (Google, GitHub, Microsoft, any OIDC).")
def providers():
    pass


def _parse_pairs(pairs, what: str) -> dict:
    """FIELD=CLAIM options into a dict."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{what} must look like name=value, not {pair!r}")
        result[key.strip()] = value.strip()
    return result


def _provider_options(function):
    options = [
        click.option("--id", "provider_id", required=True, help="Slug used in its URLs, e.g. google."),
        click.option("--name", "display_name", default=None, help="Shown on the button (default: the id)."),
        click.option("--client-id", required=True, help="The client id the upstream gave you."),
        click.option("--client-secret", default=None,
                     help="The client secret (prompted for, hidden, when not given; never printed)."),
        click.option("--scopes", default=None, help="Space-separated scopes (default: the preset's)."),
        click.option("--map", "mappings", multiple=True,
                     help="FIELD=CLAIM for email, email_verified, name, preferred_username. Repeatable."),
        click.option("--acr-map", "acr_maps", multiple=True,
                     help="UPSTREAM_ACR=OUR_ACR: trust an upstream acr value as one of our levels. Repeatable."),
        click.option("--amr-map", "amr_maps", multiple=True,
                     help="UPSTREAM_AMR=OUR_ACR: trust an upstream amr value as one of our levels. Repeatable."),
        click.option("--trust-email-verified", is_flag=True,
                     help="Link to an existing account with the same email when the upstream says email_verified."),
        click.option("--allow-registration", is_flag=True,
                     help="Create an account at the first sign-in when none is linked or matches."),
        click.option("--json", "as_json", is_flag=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _add_provider(kind, options, **where):
    from idp import audit as audit_log
    from idp.extensions import db as database
    from idp.federation.providers import ProviderRejected, create, describe
    _app()
    secret = options["client_secret"] or click.prompt("Client secret", hide_input=True)
    acr_mapping = {part: _parse_pairs(options[name], f"--{part}-map")
                   for part, name in (("acr", "acr_maps"), ("amr", "amr_maps")) if options[name]}
    try:
        row = create(options["provider_id"], kind, display_name=options["display_name"],
                     client_id=options["client_id"], client_secret=secret, scopes=options["scopes"],
                     claim_mapping=_parse_pairs(options["mappings"], "--map"), acr_mapping=acr_mapping,
                     trust_email_verified=options["trust_email_verified"],
                     allow_registration=options["allow_registration"], **where)
    except ProviderRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    audit_log.record("federation.provider.created", provider=row.id, kind=kind, via="cli")
    database.session.commit()
    data = describe(row)
    _emit(data, options["as_json"])
    if not options["as_json"]:
        click.echo(f"Register this redirect URI with the provider: {data['redirect_uri']}", err=True)


@providers.command("add-oidc", help="Any OpenID Connect provider, from its issuer URL (discovery).")
@click.option("--issuer", required=True, help="Exactly as its discovery document says, e.g. https://login.example.com")
@_provider_options
def providers_add_oidc(issuer, **options):
    _add_provider("oidc", options, issuer=issuer)


@providers.command("add-google", help="Sign in with Google (OpenID Connect).")
@_provider_options
def providers_add_google(**options):
    _add_provider("google", options)


@providers.command("add-microsoft", help="Sign in with Microsoft Entra ID / personal accounts (OpenID Connect).")
@click.option("--tenant", default="organizations", show_default=True,
              help="A tenant id or domain for one organisation, or common, organizations or consumers.")
@_provider_options
def providers_add_microsoft(tenant, **options):
    from idp.federation.providers import ProviderRejected, microsoft_issuer
    try:
        issuer = microsoft_issuer(tenant)
    except ProviderRejected as rejected:
        raise click.ClickException(str(rejected)) from None
    _add_provider("microsoft", options, issuer=issuer)


@providers.command("add-github", help="Sign in with GitHub (OAuth 2.0 with its user and e-mail APIs).")
@click.option("--base-url", default="https://github.com", show_default=True,
              help="GitHub's web URL (GitHub Enterprise Server: https://HOST).")
@click.option("--api-url", default="https://api.github.com", show_default=True,
              help="GitHub's REST API URL (GitHub Enterprise Server: https://HOST/api/v3).")
@_provider_options
def providers_add_github(base_url, api_url, **options):
    _add_provider("github", options, issuer=base_url, api_base_url=api_url)


def _find_provider(provider_id):
    from idp.federation.providers import find
    row = find(provider_id)
    if row is None:
        raise click.ClickException(f"no provider {provider_id!r}")
    return row


@providers.command("list")
@click.option("--json", "as_json", is_flag=True)
def providers_list(as_json):
    from idp.extensions import db as database
    from idp.federation.providers import describe
    from idp.models import UpstreamProvider
    _app()
    rows = database.session.scalars(database.select(UpstreamProvider).order_by(UpstreamProvider.id))
    _emit([describe(row) for row in rows], as_json)


@providers.command("show")
@click.argument("provider_id")
@click.option("--json", "as_json", is_flag=True)
def providers_show(provider_id, as_json):
    from idp.federation.providers import describe
    _app()
    _emit(describe(_find_provider(provider_id)), as_json)


def _set_enabled(provider_id: str, enabled: bool) -> None:
    from idp import audit as audit_log
    from idp.extensions import db as database
    from idp.clock import now
    _app()
    row = _find_provider(provider_id)
    row.enabled = enabled
    row.updated_at = now()
    audit_log.record(f"federation.provider.{'enabled' if enabled else 'disabled'}", provider=row.id, via="cli")
    database.session.commit()
    click.echo(f"{'enabled' if enabled else 'disabled'} {row.id}")


@providers.command("disable", help="Hide the button and refuse sign-ins through it; links are kept.")
@click.argument("provider_id")
def providers_disable(provider_id):
    _set_enabled(provider_id, False)


@providers.command("enable")
@click.argument("provider_id")
def providers_enable(provider_id):
    _set_enabled(provider_id, True)


@providers.command("delete", help="Remove the provider and every account link to it.")
@click.argument("provider_id")
def providers_delete(provider_id):
    from idp import audit as audit_log
    from idp.extensions import db as database
    _app()
    row = _find_provider(provider_id)
    audit_log.record("federation.provider.deleted", provider=row.id, via="cli")
    database.session.delete(row)
    database.session.commit()
    click.echo(f"deleted {provider_id}")


# --- demo ------------------------------------------------------------------------------------
DEMO_CONFIDENTIAL = "demo-confidential"
DEMO_PUBLIC = "demo-public"


def _in_batches(step, batch: int) -> int:
    """Call step(limit=batch) until it does less than a full batch; the total it did."""
    total = 0
    while True:
        done = step(limit=batch)
        total += done
        if done < batch:
            return total


def purge_expired(batch: int) -> dict[str, int]:
    """One small function per room, each deleting in batches; returns the rows each table lost."""
    from flask import current_app

    from idp.authn.session import end_expired_sessions
    from idp.authn.throttle import purge_quiet_throttles
    from idp.clock import now
    from idp.oauth.purge import purge_oauth
    from idp.outbox import delete_finished
    settings = current_app.config["IDP_SETTINGS"]
    # Sessions first, through logout (the apps hear of it), so their grants may go in this run.
    counts = {"sso_sessions": _in_batches(end_expired_sessions, batch)}
    counts.update(purge_oauth(batch))
    counts["login_throttles"] = purge_quiet_throttles(batch)
    counts["outbox"] = delete_finished(now() - timedelta(seconds=settings.outbox_retention), batch)
    counts.update(_purge_short_lived(batch))
    counts.update(_purge_audit(settings, batch))
    return counts


def _purge_audit(settings, batch: int) -> dict[str, int]:
    from idp.audit import purge_old
    from idp.clock import now
    moment = now()

    def before(seconds):
        return moment - timedelta(seconds=seconds) if seconds else None
    return purge_old(blank_before=before(settings.audit_ip_retention),
                     delete_before=before(settings.audit_retention), batch=batch)


def _purge_short_lived(batch: int) -> dict[str, int]:
    """Rows that are useless once expired: emailed links, logins in progress, passkey
    challenges, federation round trips and identities waiting to be linked."""
    from idp.clock import now
    from idp.models import FederationState, LoginAttempt, PendingLink, UserToken, WebAuthnChallenge
    from idp.models.batches import delete_in_batches
    moment = now()
    return {model.__tablename__: delete_in_batches(model, model.expires_at <= moment, batch)
            for model in (UserToken, LoginAttempt, WebAuthnChallenge, FederationState, PendingLink)}


@main.command(help="Delete expired codes, tokens, pending requests and sessions, quiet login throttles and old "
                   "outbox messages, and apply the audit retention settings; safe to run from cron on several "
                   "instances at once.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Rows per DELETE statement (each batch commits, so locks stay short).")
@click.option("--json", "as_json", is_flag=True)
def purge(batch, as_json):
    from idp import audit
    from idp.extensions import db as database
    _app()
    counts = purge_expired(batch)
    audit.record("cli.purge.completed", deleted=counts)
    database.session.commit()
    _emit(counts, as_json)


@main.command("seed-demo", help="Create the two demo clients once (idempotent) and print how to use them.")
def seed_demo():
    from idp.extensions import db as database
    from idp.keys import ensure_keys
    from idp.oauth.clients import create_client, find_client, rotate_secret
    app = _app()
    settings = app.config["IDP_SETTINGS"]
    ensure_keys(settings)
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
