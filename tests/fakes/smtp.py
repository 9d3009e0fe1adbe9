"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, in the test's own event loop.

It stores every accepted message parsed with `email` (policy=default), can require a login, and can be scripted
to refuse a stage (`451` at DATA, `550` at RCPT, ...) to test how replies are classified. Given a server
`tls_context`, it speaks TLS like a real submission server: `mode="starttls"` (port 587: STARTTLS offered and
required before MAIL and AUTH) or `mode="tls"` (port 465: TLS from the first byte).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

Stage = Literal["MAIL", "RCPT", "DATA"]
Mode = Literal["plain", "starttls", "tls"]


@dataclass(frozen=True)
class SmtpReply:
    """A scripted refusal: at `stage`, answer `line` (e.g. "451 4.3.0 Try again later") instead of accepting."""

    stage: Stage
    line: str


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the envelope, the parsed message, its raw bytes, who logged in to send it, and the
    TLS version it travelled under (e.g. "TLSv1.3"; None: in clear)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    login: str | None
    tls_version: str | None


class FakeSmtp:
    """An SMTP server: `async with FakeSmtp(users={"bob": "pw"}) as smtp:` then point a client at smtp.port."""

    def __init__(
        self, *, users: dict[str, str] | None = None, tls_context: ssl.SSLContext | None = None, mode: Mode = "plain"
    ) -> None:
        if (mode == "plain") != (tls_context is None):
            raise ValueError(f"mode {mode!r} with tls_context={tls_context!r}: TLS modes need one, plain takes none")
        self.users = users
        self.tls_context = tls_context
        self.mode = mode
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
        implicit_tls = self.tls_context if self.mode == "tls" else None
        self._server = await loop.create_server(self._protocol, self.host, 0, ssl=implicit_tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _protocol(self) -> SMTP:
        starttls = self.mode == "starttls"
        return SMTP(
            self,
            hostname="fake-smtp.test",
            authenticator=self._authenticate if self.users is not None else None,
            tls_context=self.tls_context if starttls else None,
            require_starttls=starttls,
            # STARTTLS: AUTH only once upgraded, aiosmtpd's default. Implicit TLS: always encrypted, but aiosmtpd
            # cannot tell. Plain: AUTH in clear is fine on loopback, and the only way without a certificate.
            auth_require_tls=starttls,
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

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd hook for a failed session: logged as aiosmtpd would, except a client refusing our certificate."""
        # Tests of certificate checks make clients hang up mid-STARTTLS on purpose: no traceback for those.
        if not isinstance(error, TLSSetupException):
            logging.getLogger("mail.log").exception("SMTP session exception")
        return f"500 Error: ({type(error).__name__})"

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
        self.messages.append(
            ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), message, raw, login, _tls_version(server))
        )
        return "250 2.0.0 OK: queued"


def _tls_version(server: SMTP) -> str | None:
    """The TLS version of the connection as the server sees it, after STARTTLS or from the first byte."""
    ssl_object = server.transport.get_extra_info("ssl_object") if server.transport is not None else None
    return ssl_object.version() if isinstance(ssl_object, ssl.SSLObject) else None
