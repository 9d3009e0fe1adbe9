"""The email notifier: multipart text and HTML over SMTP."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
from typing import Final, Literal, Self

import aiosmtplib
from pydantic import Field, SecretStr, field_validator, model_validator

from notifiers.base import NotifierConfigBase
from notifiers.email_render import render_message
from notifiers.escape import header_value
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError, SendError
from watcher.core.clock import Clock, SystemClock
from watcher.core.failures import Reason
from watcher.core.notification import Notification


class EmailConfig(NotifierConfigBase):
    """`type: email`: an SMTP server, the sender and the recipients."""

    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = False
    tls: bool = False
    # A PEM bundle's text, not a path: the config loader turns `ca_file: path` into `ca:` with the file's content.
    ca: str | None = Field(None, description="PEM certificates of extra CAs to trust, besides the system's")
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)
    subject_prefix: str = "[benchwatch]"

    @field_validator("sender", "to")
    @classmethod
    def _plain_addresses(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        # A CR or LF in an address would let it write headers of its own (`Bcc:`): refused at load.
        for address in (value,) if isinstance(value, str) else value:
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in address):
                raise ValueError(f"an email address must not hold line breaks or control characters: {address!r}")
            if "@" not in email.utils.parseaddr(address)[1]:
                raise ValueError(f"expected an email address like ops@example.com, got {address[:80]!r}")
        return value

    @field_validator("ca")
    @classmethod
    def _loadable_ca(cls, ca: str | None) -> str | None:
        # Empty is none: `${COMPANY_CA:-}`, or an unreadable ca_file, which the loader has already reported.
        if not ca:
            return None
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError):
            raise ValueError("no PEM certificate found in it") from None
        return ca

    @model_validator(mode="after")
    def _one_tls(self) -> Self:
        if self.starttls and self.tls:
            raise ValueError("give starttls or tls, not both")
        if self.ca is not None and not (self.starttls or self.tls):
            raise ValueError("ca_file needs starttls or tls")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self

    def destination(self) -> str:
        """Where it sends."""
        security = "TLS" if self.tls else "STARTTLS" if self.starttls else "plain"
        if self.ca is not None:
            security += ", extra CA"
        return f"{', '.join(self.to)} via {self.host}:{self.port} ({security})"


DEFAULT_TIMEOUT_S: Final = 30.0
QUIT_TIMEOUT_S: Final = 5.0


class EmailNotifier:
    """Sends each notification as one multipart email to the configured recipients."""

    def __init__(
        self,
        name: str,
        config: EmailConfig,
        context: NotifierContext,
        clock: Clock | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._config = config
        self._clock = clock or SystemClock()
        self._timeout_s = timeout_s
        self._what = f"email via {config.host}:{config.port}"
        # Built once: loading the system's CAs reads files, which a send should not do on the event loop.
        self._tls_context = server_tls_context(config)

    def __repr__(self) -> str:
        return f"EmailNotifier(name={self.name!r}, destination={self._config.destination()!r})"

    async def send(self, notification: Notification) -> None:
        """Deliver one notification over SMTP, or raise a classified `SendError`."""
        config = self._config
        message = render_message(
            notification,
            sender=config.sender,
            to=config.to,
            subject_prefix=config.subject_prefix,
            now_ms=self._clock.now_ms(),
        )
        client = smtp_client(config, self._timeout_s, self._tls_context)
        try:
            # aiosmtplib's timeout bounds each step; this one bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                await client.connect()
                # The envelope recipients are the configured ones, never read back from the headers.
                # Accepted for some recipients only counts as sent: a retry would duplicate it for the others.
                await client.send_message(message, sender=config.sender, recipients=list(config.to))
        except (aiosmtplib.SMTPException, TimeoutError, OSError, ValueError) as exc:
            raise smtp_error(exc, self._what, self._timeout_s) from None
        else:
            await _quit_quietly(client)
        finally:
            client.close()


def server_tls_context(config: EmailConfig) -> ssl.SSLContext | None:
    """How the server is checked under TLS: its certificate chain and name, against the system's CAs plus `ca`.

    None for a plain connection. There is deliberately no way to turn the check off.
    """
    if not (config.tls or config.starttls):
        return None
    # Not create_default_context(cadata=...): given CAs, it leaves out the system's, and public servers would fail.
    context = ssl.create_default_context()
    if config.ca is not None:
        context.load_verify_locations(cadata=config.ca)
    return context


def smtp_client(config: EmailConfig, timeout_s: float, tls_context: ssl.SSLContext | None) -> aiosmtplib.SMTP:
    """An unconnected client: implicit TLS (`tls`), a required STARTTLS upgrade (`starttls`), or plain.

    `tls_context` is `server_tls_context(config)`.
    """
    password = config.password.get_secret_value() if config.password is not None else None
    return aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        use_tls=config.tls,
        # Explicit, never "upgrade if offered": what `benchwatch check` prints is what happens.
        start_tls=config.starttls,
        username=config.username,
        password=password,
        timeout=timeout_s,
        tls_context=tls_context,
    )


_STAGES: Final[dict[type[Exception], str]] = {
    aiosmtplib.SMTPSenderRefused: "sender refused",
    aiosmtplib.SMTPDataError: "message refused",
    aiosmtplib.SMTPHeloError: "greeting refused",
    aiosmtplib.SMTPConnectResponseError: "connection refused",
}


def smtp_error(exc: Exception, what: str, timeout_s: float) -> SendError:
    """The classified error for a failed SMTP exchange; the message holds reply codes, never server text."""
    if (rejected := _certificate_failure(exc)) is not None:
        # An unknown CA, a wrong name or an expired certificate waits for a person: retrying will not fix it.
        detail = header_value(rejected.verify_message or "verification failed", max_chars=200)
        return PermanentSendError(f"{what}: server certificate rejected ({detail})", reason=Reason.CLIENT_ERROR)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({refused.code for refused in exc.recipients})
        return _by_code(min(codes), f"{what}: recipients refused (SMTP {', '.join(map(str, codes))})")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        message = f"{what}: login refused (SMTP {exc.code})"
        if _is_transient(exc.code):
            return RetryableSendError(message, reason=Reason.AUTH)
        return PermanentSendError(message, reason=Reason.AUTH)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, f"{what}: {_STAGES.get(type(exc), 'reply')} (SMTP {exc.code})")
    if isinstance(exc, TimeoutError):
        return RetryableSendError(f"{what}: no answer within {timeout_s:g} s", reason=Reason.TIMEOUT)
    if isinstance(exc, OSError):
        return RetryableSendError(f"{what}: connection failed ({type(exc).__name__})", reason=Reason.CONNECTION)
    # What is left — STARTTLS or AUTH not offered, an address that cannot be sent — is configuration:
    # retrying will not change it.
    return PermanentSendError(f"{what}: {_flat(exc)}", reason=Reason.CLIENT_ERROR)


async def _quit_quietly(client: aiosmtplib.SMTP) -> None:
    """Say goodbye, briefly: the message is already accepted, so a slow or failed QUIT must not become a retry."""
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await client.quit(timeout=QUIT_TIMEOUT_S)


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The failed certificate check behind `exc`: raised as is by STARTTLS, wrapped by aiosmtplib's connect."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__
    return None


def _by_code(code: int, message: str) -> SendError:
    """4xx: the server asks us to come back later; 5xx: it will not take this message."""
    if _is_transient(code):
        return RetryableSendError(message, reason=Reason.SERVER_ERROR)
    return PermanentSendError(message, reason=Reason.CLIENT_ERROR)


def _is_transient(code: int) -> bool:
    return code < 500


def _flat(exc: Exception) -> str:
    """aiosmtplib's own text for the leftovers: library messages, one line, no server reply in them."""
    return header_value(str(exc), max_chars=200)
