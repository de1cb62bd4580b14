"""Outgoing email: render templates/mail/<name>.txt and .html, queue the message in the outbox
(the caller's transaction), and send it over SMTP from the outbox worker.

A page never talks to the mail server: a slow or down server delays the message, not the page,
and a message queued before a restart is sent after it. Messages often carry a live link (verify
an address, reset a password), so the queued copy is sealed (Fernet, key derived from
IDP_SECRET_KEY): whoever can read the database cannot read the links out of the outbox.
Every link is built by the caller from the configured issuer, never from the request's Host.
"""
from __future__ import annotations

import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet
from flask import Flask, current_app, render_template

from idp import outbox
from idp.security.derived import fernet_for

log = logging.getLogger("idp.mail")

KIND = "mail"
SMTP_TIMEOUT = 10  # seconds per SMTP conversation; the outbox retries later


def init_mail(app: Flask) -> None:
    outbox.register_handler(app, KIND, deliver, first=True)  # one send to our own server; people wait for it


def send(to: str, template: str, **context) -> None:
    """Render templates/mail/<template>.txt (first line "Subject: ...", a blank line, the body)
    and .html, and queue the message; the caller commits, so a rolled-back page sends nothing."""
    text = render_template(f"mail/{template}.txt", **context)
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject: "):
        raise ValueError(f"templates/mail/{template}.txt must start with a Subject: line")
    html = render_template(f"mail/{template}.html", subject=head[9:].strip(), **context)
    message = {"to": to, "subject": head[9:].strip(), "text": body.strip() + "\n", "html": html}
    sealed = _fernet().encrypt(json.dumps(message).encode()).decode()
    outbox.enqueue(KIND, {"template": template, "sealed": sealed})


def deliver(payload: dict) -> None:
    """The outbox handler: open the sealed message and send it (or log it in development)."""
    settings = current_app.config["IDP_SETTINGS"]
    message = json.loads(_fernet().decrypt(payload["sealed"].encode()))
    if not settings.smtp_url:
        if settings.is_development:
            log.warning("IDP_SMTP_URL is not set; the mail is only logged (development)\nTo: %s\nSubject: %s\n\n%s",
                        message["to"], message["subject"], message["text"])
            return
        raise outbox.DeliveryFailed("IDP_SMTP_URL is not set")
    try:
        _send_smtp(settings, _build(settings, message))
    except (smtplib.SMTPException, OSError, ssl.SSLError) as failure:
        raise outbox.DeliveryFailed(f"{payload['template']} mail not sent: {type(failure).__name__}: "
                                    f"{str(failure)[:200]}") from None


def _build(settings, message: dict) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = message["to"]
    mail["Subject"] = message["subject"]
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=urlsplit(settings.issuer).hostname)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    mail.set_content(message["text"])
    mail.add_alternative(message["html"], subtype="html")
    return mail


def _send_smtp(settings, mail: EmailMessage) -> None:
    """smtps:// is TLS from the first byte; smtp:// requires STARTTLS unless ?tls=none (a local
    relay). Certificates are verified; credentials never travel without TLS."""
    url = urlsplit(settings.smtp_url)
    context = ssl.create_default_context()
    plain = url.scheme == "smtp" and url.query == "tls=none"
    if url.scheme == "smtps":
        connection = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=SMTP_TIMEOUT, context=context)
    else:
        connection = smtplib.SMTP(url.hostname, url.port or 587, timeout=SMTP_TIMEOUT)
    with connection:
        if url.scheme == "smtp" and not plain:
            connection.starttls(context=context)
        if url.username:
            if plain:
                raise smtplib.SMTPException("refusing to send SMTP credentials without TLS")
            connection.login(unquote(url.username), unquote(url.password or ""))
        connection.send_message(mail)


def _fernet() -> Fernet:
    return fernet_for(current_app.config["IDP_SETTINGS"].secret_key, b"idp outbox mail")
