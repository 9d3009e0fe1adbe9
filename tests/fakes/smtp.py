"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, in the test's own event loop.

It stores every accepted message parsed with `email` (policy=default), can require a login, and can be scripted
to refuse a stage (`451` at DATA, `550` at RCPT, ...) to test how replies are classified.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True)
class SmtpReply:
    """A scripted refusal: at `stage`, answer `line` (e.g. "451 4.3.0 Try again later") instead of accepting."""

    stage: Stage
    line: str


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the envelope, the parsed message, its raw bytes and who logged in to send it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    login: str | None


class FakeSmtp:
    """An SMTP server: `async with FakeSmtp(users={"bob": "pw"}) as smtp:` then point a client at smtp.port."""

    def __init__(self, *, users: dict[str, str] | None = None) -> None:
        self.users = users
        self.messages: list[ReceivedMail] = []
        self.login_attempts: list[tuple[str, bool]] = []
        self.script: deque[SmtpReply] = deque()
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None

    def then(self, *replies: SmtpReply) -> FakeSmtp:
        """Queue refusals; each is used once, by the next command of its stage."""
        self.script.extend(replies)
        return self

    async def __aenter__(self) -> FakeSmtp:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _protocol(self) -> SMTP:
        return SMTP(
            self,
            hostname="fake-smtp.test",
            authenticator=self._authenticate if self.users is not None else None,
            # Plain-text AUTH is fine on loopback, and the only way without a certificate.
            auth_require_tls=False,
            loop=asyncio.get_running_loop(),
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.users is not None and isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = self.users.get(login) == password
        self.login_attempts.append((login, ok))
        # handled=False: aiosmtpd itself answers a failure, with 535 5.7.8 as a real server would.
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def _refusal(self, stage: Stage) -> str | None:
        if self.script and self.script[0].stage == stage:
            return self.script.popleft().line
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        """aiosmtpd hook for MAIL FROM."""
        if refusal := self._refusal("MAIL"):
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """aiosmtpd hook for RCPT TO."""
        if refusal := self._refusal("RCPT"):
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd hook for the message itself: parse and store it."""
        if refusal := self._refusal("DATA"):
            return refusal
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self.messages.append(ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), message, raw, login))
        return "250 2.0.0 OK: queued"
