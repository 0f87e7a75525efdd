"""Sending the owner's invitation by email through smtplib (BUSANPAY_SMTP_URL).

URL forms: ``smtp://[user:password@]host[:port][?from=addr&starttls=1]`` or ``smtps://…``
(TLS from the first byte). The password is never logged.
"""
from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)


class MailError(RuntimeError):
    pass


def send_mail(smtp_url: str, *, to: str, subject: str, body: str, timeout: float = 10.0) -> None:
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailError("BUSANPAY_SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
    query = parse_qs(parts.query)
    sender = (query.get("from") or [f"no-reply@{parts.hostname}"])[0]
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(body)
    client_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    try:
        with client_class(parts.hostname, port, timeout=timeout) as client:
            if (query.get("starttls") or ["0"])[0] in ("1", "true", "yes"):
                client.starttls()
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as err:
        log.warning("invitation email to %s failed: %s", to, type(err).__name__)
        raise MailError(type(err).__name__) from None
