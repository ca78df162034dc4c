"""A real SMTP server on loopback (aiosmtpd) that keeps every message it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ferry_testing.net import free_port


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        """The text of the ``text/<subtype>`` part (plain or html)."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())


class _Handler:
    def __init__(self, box: MailServer) -> None:
        self._box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self._box.requires_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._box._received(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


class MailServer:
    """``async with MailServer() as smtp:``; ``smtp.url`` for FERRY_SMTP_URL.

    With ``username``/``password`` the server asks for AUTH (plain text over loopback).
    """

    def __init__(self, username: str = "", password: str = "") -> None:
        self.messages: list[ReceivedMail] = []
        self._username = username
        self._password = password
        self._controller: Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

    @property
    def requires_auth(self) -> bool:
        return bool(self._username)

    def _received(self, mail: ReceivedMail) -> None:
        # aiosmtpd runs its own loop in a thread; hand the mail to the test's loop.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._add, mail)

    def _add(self, mail: ReceivedMail) -> None:
        self.messages.append(mail)
        self._changed.set()

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self._username
            and data.password.decode() == self._password
        )
        return AuthResult(success=ok)

    @property
    def url(self) -> str:
        assert self._controller is not None
        auth = f"{self._username}:{self._password}@" if self._username else ""
        return f"smtp://{auth}127.0.0.1:{self._controller.port}?starttls=false"

    async def __aenter__(self) -> MailServer:
        self._loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if self._username:
            kwargs = {
                "authenticator": self._auth,
                "auth_require_tls": False,
                # Checked in handle_DATA: requiring AUTH without TLS makes aiosmtpd warn.
                "auth_required": False,
            }
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=free_port(), **kwargs
        )
        await asyncio.to_thread(self._controller.start)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)

    async def wait_for(self, count: int = 1, *, timeout: float = 15.0) -> list[ReceivedMail]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.messages if address in m.recipients]
