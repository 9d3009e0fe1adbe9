"""The email notifier: multipart text and HTML over SMTP."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from notifiers.base import NotifierConfigBase


class EmailConfig(NotifierConfigBase):
    """`type: email`: an SMTP server, the sender and the recipients."""

    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)
    subject_prefix: str = "[benchwatch]"

    @model_validator(mode="after")
    def _one_tls(self) -> Self:
        if self.starttls and self.tls:
            raise ValueError("give starttls or tls, not both")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self

    def destination(self) -> str:
        """Where it sends."""
        security = "TLS" if self.tls else "STARTTLS" if self.starttls else "plain"
        return f"{', '.join(self.to)} via {self.host}:{self.port} ({security})"
