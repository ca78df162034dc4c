"""Email over SMTP with aiosmtplib: a plain-text and an HTML part, STARTTLS and auth when asked.

``FERRY_SMTP_URL``: ``smtp://[user:pass@]host[:port][?starttls=true]`` or
``smtps://...`` (TLS from the first byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from ferry_events import mask_secrets
from ferry_notifier.errors import Retryable, Undeliverable


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"FERRY_SMTP_URL must look like smtp://user:pass@host:port?starttls=true "
                f"(or smtps://...), not {parts.scheme or 'a URL without scheme'}://..."
            )
        query = parse_qs(parts.query)
        starttls = query.get("starttls", [""])[0].lower()
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            # None lets aiosmtplib use STARTTLS when the server offers it.
            start_tls=True if starttls in ("true", "1", "yes") else False if starttls else None,
        )


class Mailer:
    def __init__(self, config: SmtpConfig, sender: str, timeout: float) -> None:
        self._config = config
        self._sender = sender
        self._timeout = timeout

    async def send(self, to: str, subject: str, text: str, html: str, event_id: str) -> None:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain="ferry.local")
        message["X-Ferry-Event-Id"] = event_id
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        cfg = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password,
                use_tls=cfg.use_tls,
                start_tls=cfg.start_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise Undeliverable(f"SMTP server refused {to}: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise Undeliverable(
                    f"SMTP server refused the mail: {exc.code} {exc.message}"
                ) from exc
            raise Retryable(f"SMTP server: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise Retryable(f"SMTP: {mask_secrets(repr(exc))}") from exc
