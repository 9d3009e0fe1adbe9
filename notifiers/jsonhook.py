"""What the notifiers that POST one JSON document per notification share (Discord, Teams, webhook, PagerDuty): the
constructor, the repr, and the POST whose answer is classified the shared way. Each notifier says only what
differs: where it posts, the document, and (the webhook) its headers and body."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Final, Generic, Protocol, TypeVar

from notifiers.http import encode_json, post_classified
from notifiers.protocol import NotifierContext
from watcher.core.clock import Clock, SystemClock
from watcher.core.notification import Notification

JSON_HEADERS: Final = {"Content-Type": "application/json", "User-Agent": "benchwatch"}


class PostSettings(Protocol):
    """What the base reads of a JSON webhook's config."""

    @property
    def timeout_ms(self) -> int:
        """How long one POST may take."""
        ...

    def destination(self) -> str:
        """Where it sends, never including a secret."""
        ...


ConfigT = TypeVar("ConfigT", bound=PostSettings)


class JsonWebhookNotifier(ABC, Generic[ConfigT]):
    """POSTs each notification as one JSON document to one URL; 2xx is success, anything else a classified
    `SendError` (retryable with the server's Retry-After, or permanent)."""

    def __init__(
        self,
        name: str,
        config: ConfigT,
        context: NotifierContext,
        clock: Clock | None = None,
        *,
        timeout_s: float | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._session = context.session
        self._clock = clock or SystemClock()
        self._timeout_s = timeout_s if timeout_s is not None else config.timeout_ms / 1000  # tests: shorter
        self._what = self.describe()  # how every error and log line names the destination

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.shown()})"

    def shown(self) -> str:
        """What the repr shows besides the name (never a secret)."""
        return f"destination={self._what!r}"

    async def send(self, notification: Notification) -> None:
        """POST one notification; the body is serialised once, and those exact bytes are sent (and signed)."""
        body = self.body(notification)
        await post_classified(
            self._session,
            self.url(),
            body,
            self.headers(notification, body),
            timeout_s=self._timeout_s,
            what=self._what,
            clock=self._clock,
        )

    def describe(self) -> str:
        """Where it sends, as messages say it (no secret: a chat webhook's URL is its credential)."""
        return self._config.destination()

    @abstractmethod
    def url(self) -> str:
        """The URL to POST to."""

    @abstractmethod
    def document(self, notification: Notification) -> dict[str, Any]:
        """The JSON document telling `notification`."""

    def body(self, notification: Notification) -> bytes:
        """The request body: the document as compact UTF-8 JSON."""
        return encode_json(self.document(notification))

    def headers(self, notification: Notification, body: bytes) -> Mapping[str, str]:
        """The request headers."""
        return JSON_HEADERS
