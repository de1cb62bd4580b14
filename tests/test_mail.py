"""Mail over TLS, through the outbox worker, to aiosmtpd servers in the test process that use a
private CA made here with `cryptography`: smtp:// upgrades with STARTTLS before it logs in,
smtps:// is TLS from the first byte, the certificate (chain and name) is verified, and an
untrusted server leaves the message pending for a retry. idp has no setting of its own for a
private CA: OpenSSL's SSL_CERT_FILE names the trusted bundle (see README, "Email")."""
from __future__ import annotations

import dataclasses
import email
import email.policy
import ipaddress
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp import clock, create_app, mail, outbox
from idp.extensions import db
from idp.models import OutboxMessage, User
from tests.conftest import _free_port

LOGIN, SECRET = "mailer", "s3cret pass"
USERINFO = f"{LOGIN}:{SECRET.replace(' ', '%20')}"  # as it is written in IDP_SMTP_URL


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer_name: str, public_key, signing_key, *, ca: bool, names=()):
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer_name))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem(value) -> bytes:
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.PEM)
    return value.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())


@dataclasses.dataclass
class PrivateCA:
    """A CA of our own and two server certificates it signed: one for 127.0.0.1, one for
    another name only."""
    ca_file: Path
    right: ssl.SSLContext   # server context: certificate for 127.0.0.1
    wrong: ssl.SSLContext   # server context: certificate for mail.example.test only


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory) -> PrivateCA:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("idp test CA", "idp test CA", ca_key.public_key(), ca_key, ca=True)
    (folder / "ca.pem").write_bytes(_pem(ca_cert))

    def server_context(label: str, names) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(label, "idp test CA", key.public_key(), ca_key, ca=False, names=names)
        (folder / f"{label}.pem").write_bytes(_pem(cert))
        (folder / f"{label}.key").write_bytes(_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / f"{label}.pem", folder / f"{label}.key")
        return context

    right = server_context("right", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    wrong = server_context("wrong", [x509.DNSName("mail.example.test")])
    return PrivateCA(folder / "ca.pem", right, wrong)


def _over_tls(server) -> bool:
    """Whether the connection is TLS now (after STARTTLS, or from the first byte); aiosmtpd's
    session.ssl covers only the first."""
    return server.transport.get_extra_info("ssl_object") is not None


class TlsMailbox:
    """An aiosmtpd handler that keeps each message with whether it came over TLS, and each
    login attempt with whether TLS was on by then."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages: list[tuple[object, bool]] = []
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((message, _over_tls(server)))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):  # aiosmtpd's authenticator
        with self.lock:
            self.logins.append((auth_data.login.decode(), _over_tls(server)))
        return AuthResult(success=(auth_data.login, auth_data.password) == (LOGIN.encode(), SECRET.encode()))

    def to(self, address: str) -> list[tuple[object, bool]]:
        with self.lock:
            return [(m, tls) for m, tls in self.messages if m["To"] == address]


def _serve(handler: TlsMailbox, **tls) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), authenticator=handler.authenticate,
                            auth_required=True, **tls)
    controller.start()
    return controller


@pytest.fixture
def starttls_server(private_ca):
    """Offers STARTTLS with the certificate for 127.0.0.1 and refuses anything before it."""
    handler = TlsMailbox()
    controller = _serve(handler, tls_context=private_ca.right, require_starttls=True)
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def trusting(monkeypatch, private_ca):
    """Trust the private CA the way an operator would: SSL_CERT_FILE names the bundle OpenSSL
    reads (idp makes a fresh default context per delivery, so it applies at once)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(private_ca.ca_file))


@pytest.fixture
def not_trusting(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


def _queue(app, user: dict) -> int:
    with app.app_context():
        mail.send(user["email"], "password_changed", user=db.session.get(User, user["id"]), when="now")
        db.session.commit()
        return db.session.scalars(db.select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).first()


def _try(app, message_id: int) -> tuple[tuple[int, int], OutboxMessage]:
    with app.app_context():
        result = outbox.run_once(ids=[message_id])
        row = db.session.get(OutboxMessage, message_id)
        db.session.expunge(row)
        return result, row


def _app(settings, smtp_url: str):
    return create_app(dataclasses.replace(settings, smtp_url=smtp_url))


def test_starttls_upgrades_before_the_login_and_the_message_arrives(settings, make_user, starttls_server,
                                                                    trusting):
    handler, port = starttls_server
    app = _app(settings, f"smtp://{USERINFO}@127.0.0.1:{port}")
    user = make_user()
    result, row = _try(app, _queue(app, user))
    assert result == (1, 0) and row.status == "delivered"
    [(message, over_tls)] = handler.to(user["email"])
    assert over_tls and message["Subject"] == "Your password was changed"
    assert handler.logins == [(LOGIN, True)]  # the credentials travelled inside TLS only


def test_an_untrusted_certificate_is_refused_and_the_message_is_retried(settings, make_user, starttls_server,
                                                                         not_trusting, monkeypatch, private_ca):
    handler, port = starttls_server
    app = _app(settings, f"smtp://{USERINFO}@127.0.0.1:{port}")
    user = make_user()
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    message_id = _queue(app, user)
    result, row = _try(app, message_id)
    assert result == (0, 1) and row.status == "pending" and row.attempts == 1
    assert "SSLCertVerificationError" in row.last_error and "certificate verify failed" in row.last_error
    assert handler.to(user["email"]) == [] and handler.logins == []  # nothing sent, no credentials

    monkeypatch.setenv("SSL_CERT_FILE", str(private_ca.ca_file))  # the operator trusts the CA
    clock.advance(outbox.retry_delay(1).total_seconds())
    result, row = _try(app, message_id)
    assert result == (1, 0) and row.status == "delivered" and row.attempts == 2
    assert [tls for _, tls in handler.to(user["email"])] == [True]


def test_a_trusted_certificate_for_another_name_is_refused(settings, make_user, private_ca, trusting):
    handler = TlsMailbox()
    controller = _serve(handler, tls_context=private_ca.wrong, require_starttls=True)
    try:
        app = _app(settings, f"smtp://{USERINFO}@127.0.0.1:{controller.port}")
        user = make_user()
        result, row = _try(app, _queue(app, user))
    finally:
        controller.stop()
    assert result == (0, 1) and row.status == "pending"
    assert "SSLCertVerificationError" in row.last_error and "127.0.0.1" in row.last_error
    assert handler.to(user["email"]) == [] and handler.logins == []


def test_a_server_without_starttls_gets_neither_the_message_nor_the_credentials(settings, make_user, mailbox):
    """smtp:// without ?tls=none never falls back to plain text (the session mailbox offers no
    STARTTLS)."""
    app = _app(settings, f"smtp://{USERINFO}@127.0.0.1:{mailbox.controller.port}")
    user = make_user()
    result, row = _try(app, _queue(app, user))
    assert result == (0, 1) and row.status == "pending"
    assert "SMTPNotSupportedError" in row.last_error and "STARTTLS" in row.last_error
    assert mailbox.to(user["email"]) == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # see the comment below
def test_smtps_is_tls_from_the_first_byte_and_verified_too(settings, make_user, private_ca, monkeypatch):
    handler = TlsMailbox()
    # aiosmtpd offers AUTH "only after STARTTLS" by default and does not count TLS from the first
    # byte as TLS; the handler still sees (and the test checks) that the login came over TLS.
    controller = _serve(handler, ssl_context=private_ca.right, auth_require_tls=False)
    try:
        app = _app(settings, f"smtps://{USERINFO}@127.0.0.1:{controller.port}")
        user = make_user()
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        message_id = _queue(app, user)
        result, row = _try(app, message_id)
        assert result == (0, 1) and "SSLCertVerificationError" in row.last_error
        monkeypatch.setenv("SSL_CERT_FILE", str(private_ca.ca_file))
        clock.set_now(clock.now() + outbox.retry_delay(1))
        result, row = _try(app, message_id)
    finally:
        controller.stop()
    assert result == (1, 0) and row.status == "delivered", row.last_error
    assert [tls for _, tls in handler.to(user["email"])] == [True] and handler.logins == [(LOGIN, True)]
