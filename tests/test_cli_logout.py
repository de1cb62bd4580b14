"""The operator side of logout: `idp clients create` with the logout options, and `idp worker`
(which delivers outbox messages and stops cleanly on SIGTERM)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from idp.extensions import db
from idp.models import OutboxMessage
from idp.oauth.logout import EVENT, KIND
from idp.outbox import enqueue
from idp.users.directory import find_by_subject
from tests.oauth.flows import jwt_header, jwt_payload
from tests.oauth.test_logout import Receiver
from tests.test_cli import Cli, new_user


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    tool = Cli(tmp_path_factory.mktemp("cli-logout"))
    tool.env["IDP_OUTBOX_WORKER"] = "off"
    tool("db", "upgrade")
    return tool


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


def test_clients_create_registers_post_logout_and_back_channel_uris(cli):
    client = cli.json("clients", "create", "--name", "Logout app", "--redirect-uri", "https://app.example/cb",
                      "--post-logout-redirect-uri", "https://app.example/bye",
                      "--post-logout-redirect-uri", "com.example.app:/bye",
                      "--backchannel-logout-uri", "https://app.example/backchannel?tenant=1",
                      "--backchannel-logout-session-required")
    assert client["post_logout_redirect_uris"] == ["https://app.example/bye", "com.example.app:/bye"]
    assert client["backchannel_logout_uri"] == "https://app.example/backchannel?tenant=1"
    assert client["backchannel_logout_session_required"] is True
    plain = cli.json("clients", "create", "--name", "Plain app", "--redirect-uri", "https://plain.example/cb")
    assert plain["post_logout_redirect_uris"] == [] and plain["backchannel_logout_uri"] is None
    assert plain["backchannel_logout_session_required"] is False


@pytest.mark.parametrize("option, uri, complaint", [
    ("--post-logout-redirect-uri", "http://app.example/bye", "post-logout redirect URI must be https"),
    ("--post-logout-redirect-uri", "https://app.example/bye#x", "must not have a fragment"),
    ("--post-logout-redirect-uri", "https://*.example/bye", "wildcards"),
    ("--backchannel-logout-uri", "http://app.example/bcl", "must use https"),
    ("--backchannel-logout-uri", "https://app.example/bcl#frag", "without user information or fragment"),
    ("--backchannel-logout-uri", "https://user@app.example/bcl", "without user information or fragment"),
    ("--backchannel-logout-uri", "/relative", "absolute URL"),
])
def test_clients_create_refuses_bad_logout_uris_and_writes_nothing(cli, option, uri, complaint):
    result = cli("clients", "create", "--name", "Bad logout", "--redirect-uri", "https://app.example/cb",
                 option, uri, ok=False)
    assert result.exit_code != 0 and complaint in result.output
    assert not [c for c in cli.json("clients", "list") if c["client_name"] == "Bad logout"]


def queue_logout_token(cli, receiver: Receiver) -> tuple[str, int]:
    client = cli.json("clients", "create", "--name", "Worker app", "--redirect-uri", "https://app.example/cb",
                      "--backchannel-logout-uri", receiver.url)
    user = new_user(cli, f"worker{receiver.port}")
    with cli.app.app_context():
        user_id = find_by_subject(user["subject"]).id
        row = enqueue(KIND, {"client_id": client["client_id"], "sid": "sid-1", "sub": user["subject"],
                             "user_id": user_id, "reason": "admin"})
        db.session.commit()
        return client["client_id"], row.id


def status_of(cli, message_id: int) -> str:
    with cli.app.app_context():
        return db.session.get(OutboxMessage, message_id).status


def test_worker_once_delivers_what_is_due(cli, receiver):
    client_id, message_id = queue_logout_token(cli, receiver)
    result = cli("worker", "--once")
    assert "delivered 1" in result.output
    [token] = receiver.wait_for(answered=1)
    assert jwt_header(token)["typ"] == "logout+jwt"
    claims = jwt_payload(token)
    assert claims["aud"] == client_id and claims["sid"] == "sid-1" and claims["events"] == {EVENT: {}}
    assert status_of(cli, message_id) == "delivered"


def test_worker_delivers_and_stops_cleanly_on_sigterm(cli, receiver):
    _, message_id = queue_logout_token(cli, receiver)
    env = {**os.environ, **{k: v for k, v in cli.env.items() if v is not None}, "IDP_OUTBOX_POLL_SECONDS": "1"}
    for name in [k for k, v in cli.env.items() if v is None]:
        env.pop(name, None)
    idp = Path(sys.executable).with_name("idp")
    process = subprocess.Popen([str(idp), "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        receiver.wait_for(answered=1)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped" in stderr
    assert status_of(cli, message_id) == "delivered"
