"""Outbound requests reach only public addresses, connect to the address they checked, and keep
TLS verification on the name (idp.security.outbound)."""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.security.outbound import AddressRefused, Policy, is_public_address, session

NOT_PUBLIC = ["10.0.0.1", "172.16.0.1", "192.168.1.1", "127.0.0.1", "127.8.9.10", "::1", "fe80::1",
              "169.254.169.254", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
              "::ffff:10.1.2.3", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "100.64.0.1", "240.0.0.1",
              "255.255.255.255", "fec0::1", "2002:7f00:1::1", "192.0.2.1", "2001:db8::1", "::127.0.0.1",
              "64:ff9b::a9fe:a9fe"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("ip", NOT_PUBLIC)
def test_addresses_that_are_not_public(ip):
    assert not is_public_address(ip)
    assert not Policy().permits(ip)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses(ip):
    assert is_public_address(ip)
    assert Policy().permits(ip)


def test_development_permits_everything_and_networks_open_only_themselves():
    assert Policy(allow_private=True).permits("169.254.169.254")
    opened = Policy(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert opened.permits("10.20.3.4") and opened.permits("::ffff:10.20.3.4")
    assert not opened.permits("10.21.0.1") and not opened.permits("127.0.0.1")


# --- over the network --------------------------------------------------------------------------
class Target:
    """A loopback HTTP(S) server that counts the requests it answered."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.hits = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                target.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def target():
    server = Target()
    yield server
    server.close()


@pytest.fixture
def resolver(monkeypatch):
    """Fake DNS for names under .example.test (not one of our components): each name answers
    the next list of addresses in `answers[name]`; every lookup is counted."""
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}
    lookups: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".example.test"):
            lookups[host] = lookups.get(host, 0) + 1
            queue = answers[host]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in addresses]
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


LOOPBACK = Policy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


def test_a_loopback_name_is_refused_before_anything_is_sent(target):
    with pytest.raises(AddressRefused, match="not public"):
        session(Policy()).get(f"http://localhost:{target.port}/", timeout=5)
    with pytest.raises(AddressRefused):
        session(Policy()).get(f"http://127.0.0.1:{target.port}/", timeout=5)
    assert target.hits == 0
    assert session(Policy(allow_private=True)).get(f"http://localhost:{target.port}/", timeout=5).text == "ok"
    assert target.hits == 1


def test_a_public_name_pointing_at_the_metadata_address_is_refused(resolver):
    answers, _ = resolver
    answers["metadata.example.test"] = [["169.254.169.254"]]
    with pytest.raises(AddressRefused):
        session(Policy()).get("https://metadata.example.test/latest/meta-data/", timeout=5)


def test_one_address_that_is_not_public_among_public_ones_refuses_the_name(resolver, target):
    answers, _ = resolver
    answers["mixed.example.test"] = [["8.8.8.8", "10.0.0.5"]]
    with pytest.raises(AddressRefused):
        session(Policy()).get(f"http://mixed.example.test:{target.port}/", timeout=5)


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(resolver, target):
    """DNS rebinding: the name answers an allowed address once, then the metadata address; the
    request reaches the checked address and the name is looked up once only."""
    answers, lookups = resolver
    answers["rebind.example.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    assert session(LOOPBACK).get(f"http://rebind.example.test:{target.port}/", timeout=5).text == "ok"
    assert lookups["rebind.example.test"] == 1 and target.hits == 1
    with pytest.raises(AddressRefused):  # the next connection sees the new answer, and refuses it
        session(LOOPBACK).get(f"http://rebind.example.test:{target.port}/", timeout=5)


def _certificate(tmp_path, name: str) -> tuple[ssl.SSLContext, str]:
    """A self-signed certificate for `name`: the server context and the CA file to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


def test_tls_is_verified_against_the_name_while_connecting_to_the_pinned_address(tmp_path, resolver):
    answers, _ = resolver
    answers["jwks.example.test"] = [["127.0.0.1"]]
    answers["other.example.test"] = [["127.0.0.1"]]
    context, ca_file = _certificate(tmp_path, "jwks.example.test")
    server = Target(tls=context)
    try:
        response = session(LOOPBACK).get(f"https://jwks.example.test:{server.port}/", timeout=5, verify=ca_file)
        assert response.text == "ok"
        with pytest.raises(requests.exceptions.SSLError):  # the certificate does not name this host
            session(LOOPBACK).get(f"https://other.example.test:{server.port}/", timeout=5, verify=ca_file)
    finally:
        server.close()


def test_a_proxy_from_the_environment_is_not_used(monkeypatch, target):
    """A proxy would resolve the name after our check; the request goes straight to the address."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert session(LOOPBACK).get(f"http://127.0.0.1:{target.port}/", timeout=5).text == "ok"


class Trickle:
    """A loopback server that sends its headers at once and then the body a few bytes at a time
    (`pause` seconds apart, each gap inside the client's read timeout), or a huge body at once."""

    def __init__(self, *, pause: float = 0.0, chunks: int = 1000, chunk: bytes = b"x"):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Length", str(chunks * len(chunk)))
                self.end_headers()
                try:
                    for _ in range(chunks):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if pause:
                            stop.wait(pause)
                        if stop.is_set():
                            return
                except OSError:
                    return

            def log_message(self, *args):
                pass

        stop = threading.Event()
        self.stop = stop
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_body_that_trickles_in_is_cut_off_at_the_timeout_not_per_read():
    import time

    server = Trickle(pause=0.05, chunks=400)  # 20 s in all, 50 ms between bytes: no single read times out
    try:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            session(LOOPBACK).get(f"http://127.0.0.1:{server.port}/", timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        server.close()


def test_a_body_larger_than_the_limit_is_refused():
    from idp.security.outbound import MAX_BODY_BYTES, ResponseTooLarge

    server = Trickle(chunks=MAX_BODY_BYTES // 65536 + 2, chunk=b"x" * 65536)
    try:
        with pytest.raises(ResponseTooLarge):
            session(LOOPBACK).get(f"http://127.0.0.1:{server.port}/", timeout=5)
    finally:
        server.close()


def test_a_streamed_body_is_left_to_the_caller(target):
    response = session(LOOPBACK).get(f"http://127.0.0.1:{target.port}/", timeout=5, stream=True)
    assert response.raw.read(2) == b"ok"


def test_headers_that_trickle_in_are_cut_off_at_the_timeout():
    """Each header line arrives within the read timeout; the whole answer does not."""
    import time

    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for n in range(90):
                    self.wfile.write(b"X-Slow-%d: x\r\n" % n)
                    self.wfile.flush()
                    if stop.wait(0.1):
                        return
                self.wfile.write(b"Content-Length: 0\r\n\r\n")
            except OSError:
                return

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            session(LOOPBACK).post(f"http://127.0.0.1:{httpd.server_port}/", data={"a": "b"}, timeout=0.5,
                                   stream=True)  # as back-channel logout sends it
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
