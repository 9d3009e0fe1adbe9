"""The email notifier against a real SMTP server: the message as received, escaping, login, reply classification,
and TLS (STARTTLS and implicit) with certificates from a throwaway CA (trustme)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import traceback
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import ValidationError

from notifiers.email import EmailConfig, EmailNotifier, server_tls_context, smtp_client
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError, SendError
from tests.fakes.smtp import FakeSmtp, Mode, SmtpReply
from watcher.app.config import load_config
from watcher.config.loader import ConfigError
from watcher.core.clock import ManualClock
from watcher.core.events import Counters, ScenarioFailed
from watcher.core.failureclass import FailureCounts
from watcher.core.models import FailureReason
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, FailureExample, FailureGroup, JobSummary

DASHBOARD = "https://platform.runloop.ai"
PASSWORD = "pw-SECRET-7f3a"


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtp]:
    async with FakeSmtp() as server:
        yield server


def config(port: int, **overrides: Any) -> EmailConfig:
    fields = {"type": "email", "host": "127.0.0.1", "port": port, "from": "bw@example.com", "to": ["ops@example.com"]}
    return EmailConfig.model_validate(fields | overrides)


def notification(
    *, job_name: str = "nightly-7", message: str = "exit code 1", agent: str = "claude-code"
) -> Notification:
    failed = ScenarioFailed(
        id="ev_1",
        job_id="bmj_1",
        job_name=job_name,
        at_ms=1_788_228_000_000,
        benchmark_run_id="bmr_1",
        agent_name=agent,
        scenario_definition_id="scn_1",
        scenario_name="train-tiny-gpt2",
        scenario_run_id="scr_1",
        failure_reason=FailureReason(exception_type="AgentError", exception_message=message),
        duration_ms=5,
    )
    summary = JobSummary(
        **dict(Counters(n_completed=8, n_failed=2, n_done=10, n_expected=12)),
        job_id="bmj_1",
        job_name=job_name,
        state="running",
        failure_reason=None,
        failure_rate=0.2,
        scores={agent: 0.8125},
        min_score=0.8125,
        agents=(
            AgentSummary(
                benchmark_run_id="bmr_1",
                agent_name=agent,
                model_name="claude-sonnet-4-6",
                finished=True,
                score=0.8125,
                average_score=0.8125,
                n_completed=8,
                n_failed=2,
                n_timeout=0,
                duration_ms=192_000,
                url=f"{DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_1",
            ),
            AgentSummary(
                benchmark_run_id="bmr_2",
                agent_name="codex",
                model_name=None,
                finished=False,
                score=None,
                average_score=None,
                n_completed=0,
                n_failed=0,
                n_timeout=0,
                duration_ms=None,
                url=f"{DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_2",
            ),
        ),
        failures=(
            FailureGroup(
                exception_type="AgentError",
                count=7,
                examples=(
                    FailureExample(
                        scenario_name="train-tiny-gpt2",
                        agent_name=agent,
                        message=message,
                        url=f"{DASHBOARD}/scenarios/scn_1/runs/scr_1",
                    ),
                ),
            ),
        ),
        failures_by_class=FailureCounts(setup=2, agent=5),
        dashboard_url=DASHBOARD,
    )
    return Notification(
        id="nt_0123456789abcdef",
        rule="failures",
        notifier="mail",
        severity="warning",
        group_key="bmj_1",
        dedup_key="failures:bmj_1",
        created_ms=1_788_228_000_000,
        title=f"Job {job_name}: scenarios failing",
        text=f"2 of 10 scenarios failed in {job_name}.\nSee the table below.",
        events=(failed,),
        summary=summary,
    )


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content().replace("\r\n", "\n") for part in message.iter_parts()}


async def test_sends_multipart_alternative_with_subject_and_stable_headers(
    smtp: FakeSmtp, context: NotifierContext
) -> None:
    notifier = EmailNotifier("mail", config(smtp.port, subject_prefix="[bw]"), context, clock=ManualClock())
    await notifier.send(notification())

    (received,) = smtp.messages
    message = received.message
    assert received.mail_from == "bw@example.com"
    assert received.rcpt_tos == ("ops@example.com",)
    assert received.tls_version is None  # plain, as configured
    assert message["Subject"] == "[bw] Job nightly-7: scenarios failing"
    assert message["Message-ID"] == "<nt_0123456789abcdef@benchwatch>"
    assert message["X-Benchwatch-Notification"] == "nt_0123456789abcdef"
    assert message["Date"] == "Tue, 01 Sep 2026 02:00:00 +0000"
    assert message.get_content_type() == "multipart/alternative"
    assert list(parts(message)) == ["text/plain", "text/html"]


async def test_text_part_holds_the_aligned_table_failures_and_links(smtp: FakeSmtp, context: NotifierContext) -> None:
    await EmailNotifier("mail", config(smtp.port), context).send(notification())

    text = parts(smtp.messages[0].message)["text/plain"]
    assert text.startswith("Job nightly-7: scenarios failing\n\n2 of 10 scenarios failed in nightly-7.\n")
    table = text.split("Agents\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table == [
        "agent        model              status    score  completed  failed  timeout  duration",
        "claude-code  claude-sonnet-4-6  finished  0.812  8          2       0        3m 12s",
        "codex        -                  running   -      0          0       0        -",
    ]
    assert (
        "Failures by type: 2 setup, 5 agent\nAgentError (7, agent)\n  - train-tiny-gpt2 (claude-code): exit code 1\n"
        in text
    )
    assert "  … and 6 more" in text
    assert f"Dashboard: {DASHBOARD}\n" in text
    assert f"codex run: {DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_2" in text


async def test_html_part_escapes_api_strings_and_links_runs(smtp: FakeSmtp, context: NotifierContext) -> None:
    sent = notification(message="<script>alert(1)</script>", agent='"><img src=x onerror=alert(2)>')
    await EmailNotifier("mail", config(smtp.port), context).send(sent)

    html = parts(smtp.messages[0].message)["text/html"]
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert f'<a href="{DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_2">codex</a>' in html
    assert "<table" in html and 'style="border-collapse:collapse"' in html
    # the plain part shows the text as it is: nothing there executes
    assert "<script>alert(1)</script>" in parts(smtp.messages[0].message)["text/plain"]


async def test_a_job_name_cannot_inject_a_header(smtp: FakeSmtp, context: NotifierContext) -> None:
    await EmailNotifier("mail", config(smtp.port), context).send(notification(job_name="x\r\nBcc: evil@example.com"))

    (received,) = smtp.messages
    assert received.rcpt_tos == ("ops@example.com",)
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "[benchwatch] Job x Bcc: evil@example.com: scenarios failing"
    header_block = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in header_block.splitlines())


async def test_message_id_is_the_same_on_a_retry(smtp: FakeSmtp, context: NotifierContext) -> None:
    notifier = EmailNotifier("mail", config(smtp.port), context)
    smtp.then(SmtpReply("DATA", "451 4.3.0 Try again later"))
    with pytest.raises(RetryableSendError):
        await notifier.send(notification())
    await notifier.send(notification())
    await notifier.send(notification())

    assert {received.message["Message-ID"] for received in smtp.messages} == {"<nt_0123456789abcdef@benchwatch>"}


async def test_a_non_ascii_title_arrives_intact(smtp: FakeSmtp, context: NotifierContext) -> None:
    await EmailNotifier("mail", config(smtp.port), context).send(notification(job_name="nächtlich-⚡"))

    assert smtp.messages[0].message["Subject"] == "[benchwatch] Job nächtlich-⚡: scenarios failing"
    assert "nächtlich-⚡" in parts(smtp.messages[0].message)["text/html"]


async def test_logs_in_when_given_credentials(context: NotifierContext) -> None:
    async with FakeSmtp(users={"bob": PASSWORD}) as smtp:
        notifier = EmailNotifier("mail", config(smtp.port, username="bob", password=PASSWORD), context)
        await notifier.send(notification())

    assert smtp.login_attempts == [("bob", True)]
    assert smtp.messages[0].login == "bob"


async def test_a_refused_login_is_permanent_auth_and_names_no_password(context: NotifierContext) -> None:
    async with FakeSmtp(users={"bob": "the-right-one"}) as smtp:
        notifier = EmailNotifier("mail", config(smtp.port, username="bob", password=PASSWORD), context)
        with pytest.raises(PermanentSendError) as caught:
            await notifier.send(notification())

    assert caught.value.reason == "auth"
    assert str(caught.value) == f"email via 127.0.0.1:{smtp.port}: login refused (SMTP 535)"
    assert smtp.messages == []
    assert smtp.login_attempts and not any(ok for _, ok in smtp.login_attempts)
    assert PASSWORD not in repr(notifier) and PASSWORD not in repr(caught.value.args)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (SmtpReply("MAIL", "451 4.3.0 Try again later"), (RetryableSendError, "server_error", "sender refused")),
        (SmtpReply("RCPT", "450 4.2.1 Mailbox busy"), (RetryableSendError, "server_error", "recipients refused")),
        (SmtpReply("DATA", "451 4.3.0 Try again later"), (RetryableSendError, "server_error", "message refused")),
        (SmtpReply("RCPT", "550 5.1.1 No such user"), (PermanentSendError, "client_error", "recipients refused")),
        (SmtpReply("DATA", "554 5.7.1 Spam"), (PermanentSendError, "client_error", "message refused")),
    ],
)
async def test_smtp_replies_are_classified(
    smtp: FakeSmtp, context: NotifierContext, reply: SmtpReply, expected: tuple[type[Exception], str, str]
) -> None:
    error, reason, words = expected
    smtp.then(reply)
    with pytest.raises(SendError) as caught:
        await EmailNotifier("mail", config(smtp.port), context).send(notification())

    assert (type(caught.value), caught.value.reason) == (error, reason)
    code = reply.line.split()[0]
    assert str(caught.value) == f"email via 127.0.0.1:{smtp.port}: {words} (SMTP {code})"
    assert smtp.messages == []


async def test_a_closed_port_is_a_retryable_connection_error(context: NotifierContext) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableSendError) as caught:
        await EmailNotifier("mail", config(port), context).send(notification())

    assert caught.value.reason == "connection"


async def test_a_server_that_never_greets_times_out_on_time(context: NotifierContext) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        notifier = EmailNotifier("mail", config(port), context, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(RetryableSendError) as caught:
            await notifier.send(notification())
        elapsed_s = time.monotonic() - started

    assert caught.value.reason == "timeout"
    assert 0.25 <= elapsed_s < 2.0


async def test_starttls_is_required_when_configured(smtp: FakeSmtp, context: NotifierContext) -> None:
    # The fake offers no STARTTLS: a notifier told to upgrade must refuse to send in clear, and say it is config.
    with pytest.raises(PermanentSendError) as caught:
        await EmailNotifier("mail", config(smtp.port, starttls=True), context).send(notification())

    assert caught.value.reason == "client_error"
    assert "STARTTLS" in str(caught.value)
    assert smtp.messages == []


async def test_implicit_tls_speaks_tls_from_the_first_byte(smtp: FakeSmtp, context: NotifierContext) -> None:
    # A plain server cannot answer a TLS handshake: proof that `tls: true` starts with one.
    with pytest.raises(RetryableSendError) as caught:
        await EmailNotifier("mail", config(smtp.port, tls=True), context, timeout_s=2).send(notification())

    assert caught.value.reason == "connection"
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("overrides", "use_tls", "start_tls"),
    [({}, False, False), ({"starttls": True}, False, True), ({"tls": True, "port": 465}, True, False)],
)
def test_connection_options_follow_the_config(overrides: dict[str, Any], use_tls: bool, start_tls: bool) -> None:
    settings = config(**{"port": 587, **overrides})
    tls_context = server_tls_context(settings)
    client = smtp_client(settings, timeout_s=12, tls_context=tls_context)

    assert (client.hostname, client.use_tls, client.timeout, client.validate_certs) == ("127.0.0.1", use_tls, 12, True)
    assert client._start_tls_on_connect is start_tls  # aiosmtplib keeps no public name for it
    assert client.tls_context is tls_context
    if use_tls or start_tls:
        assert tls_context is not None
        assert (tls_context.verify_mode, tls_context.check_hostname) == (ssl.CERT_REQUIRED, True)
    else:
        assert tls_context is None


async def test_repr_shows_the_destination_not_the_password(context: NotifierContext) -> None:
    notifier = EmailNotifier("mail", config(587, username="bob", password=PASSWORD), context)

    assert repr(notifier) == "EmailNotifier(name='mail', destination='ops@example.com via 127.0.0.1:587 (plain)')"


# --- TLS -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(ca.issue_cert("127.0.0.1", "localhost"))


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


TLS_MODES: list[Mode] = ["starttls", "tls"]  # each is also the config key that asks for it


def assert_no_password(error: BaseException, *shown: object) -> None:
    """Nowhere a person or a log could read it: the message, the repr, the whole printed traceback, other reprs."""
    texts = [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    assert not [text for text in [*texts, *map(repr, shown)] if PASSWORD in text]


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_delivers_over_tls_checked_against_ca_file(
    server_tls: ssl.SSLContext, ca_pem: str, context: NotifierContext, mode: Mode
) -> None:
    async with FakeSmtp(tls_context=server_tls, mode=mode) as smtp:
        await EmailNotifier("mail", config(smtp.port, ca=ca_pem, **{mode: True}), context).send(notification())

    (received,) = smtp.messages
    assert received.tls_version in {"TLSv1.2", "TLSv1.3"}  # the server itself saw the message arrive encrypted
    assert received.message["Subject"] == "[benchwatch] Job nightly-7: scenarios failing"


async def test_ca_file_in_the_config_is_read_from_the_config_folder(
    tmp_path: Path, server_tls: ssl.SSLContext, ca: trustme.CA, context: NotifierContext
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "company-ca.pem"))
    async with FakeSmtp(tls_context=server_tls, mode="starttls") as smtp:
        path = tmp_path / "benchwatch.yaml"
        path.write_text(
            "notifiers:\n  mail:\n    type: email\n    host: 127.0.0.1\n"
            f"    port: {smtp.port}\n    starttls: true\n    ca_file: company-ca.pem\n"
            "    from: bw@example.com\n    to: [ops@example.com]\n"
        )
        settings = load_config(path, {}).config.notifiers["mail"]
        assert isinstance(settings, EmailConfig)
        await EmailNotifier("mail", settings, context).send(notification())

    assert smtp.messages[0].tls_version is not None
    assert settings.destination() == f"ops@example.com via 127.0.0.1:{smtp.port} (STARTTLS, extra CA)"


async def test_ca_file_adds_to_the_system_cas_rather_than_replacing_them(
    tmp_path: Path, ca_pem: str, context: NotifierContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL reads the system's CA bundle from $SSL_CERT_FILE: point it at a stand-in public CA.
    public_ca = trustme.CA()
    public_ca.cert_pem.write_to_path(str(tmp_path / "system-cas.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-cas.pem"))
    public_server = server_context(public_ca.issue_cert("127.0.0.1"))

    async with FakeSmtp(tls_context=public_server, mode="tls") as smtp:
        await EmailNotifier("mail", config(smtp.port, tls=True, ca=ca_pem), context).send(notification())

    assert len(smtp.messages) == 1


CERTIFICATE_PROBLEMS = {
    # problem: what OpenSSL says about it
    "unknown CA": "unable to get local issuer certificate",
    "no ca_file": "unable to get local issuer certificate",
    "wrong name": "IP address mismatch",
}


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ("starttls", "unknown CA"),
        ("tls", "unknown CA"),
        ("starttls", "no ca_file"),
        ("tls", "wrong name"),
        ("starttls", "wrong name"),
    ],
)
async def test_a_certificate_that_does_not_verify_is_permanent_and_no_password_is_sent(
    ca: trustme.CA, ca_pem: str, context: NotifierContext, mode: Mode, problem: str
) -> None:
    issued = {
        "unknown CA": lambda: trustme.CA().issue_cert("127.0.0.1"),
        "no ca_file": lambda: ca.issue_cert("127.0.0.1"),
        "wrong name": lambda: ca.issue_cert("mail.example.com"),
    }[problem]()
    trusted = {} if problem == "no ca_file" else {"ca": ca_pem}
    async with FakeSmtp(users={"bob": PASSWORD}, tls_context=server_context(issued), mode=mode) as smtp:
        settings = config(smtp.port, username="bob", password=PASSWORD, **{mode: True}, **trusted)
        notifier = EmailNotifier("mail", settings, context, timeout_s=5)
        with pytest.raises(PermanentSendError) as caught:
            await notifier.send(notification())

    # It will not fix itself: a person has to change the certificate, the CA or the host name.
    assert caught.value.reason == "client_error"
    assert str(caught.value).startswith(f"email via 127.0.0.1:{smtp.port}: server certificate rejected (")
    assert CERTIFICATE_PROBLEMS[problem] in str(caught.value)
    assert (smtp.messages, smtp.login_attempts) == ([], [])
    assert_no_password(caught.value, notifier, settings)


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_logs_in_over_tls(server_tls: ssl.SSLContext, ca_pem: str, context: NotifierContext, mode: Mode) -> None:
    # In STARTTLS mode the fake, like aiosmtpd by default, offers AUTH only after the upgrade.
    async with FakeSmtp(users={"bob": PASSWORD}, tls_context=server_tls, mode=mode) as smtp:
        settings = config(smtp.port, username="bob", password=PASSWORD, ca=ca_pem, **{mode: True})
        await EmailNotifier("mail", settings, context).send(notification())

    assert smtp.login_attempts == [("bob", True)]
    (received,) = smtp.messages
    assert (received.login, received.tls_version is not None) == ("bob", True)


async def test_a_refused_login_over_starttls_is_permanent_auth_and_names_no_password(
    server_tls: ssl.SSLContext, ca_pem: str, context: NotifierContext
) -> None:
    async with FakeSmtp(users={"bob": "the-right-one"}, tls_context=server_tls, mode="starttls") as smtp:
        settings = config(smtp.port, starttls=True, ca=ca_pem, username="bob", password=PASSWORD)
        notifier = EmailNotifier("mail", settings, context)
        with pytest.raises(PermanentSendError) as caught:
            await notifier.send(notification())

    assert (caught.value.reason, str(caught.value)) == (
        "auth",
        f"email via 127.0.0.1:{smtp.port}: login refused (SMTP 535)",
    )
    assert smtp.login_attempts and set(smtp.login_attempts) == {("bob", False)}  # one try per mechanism
    assert_no_password(caught.value, notifier, settings)


async def test_never_logs_in_in_clear_to_a_server_that_wants_starttls_first(
    server_tls: ssl.SSLContext, context: NotifierContext
) -> None:
    async with FakeSmtp(users={"bob": PASSWORD}, tls_context=server_tls, mode="starttls") as smtp:
        notifier = EmailNotifier("mail", config(smtp.port, username="bob", password=PASSWORD), context)
        with pytest.raises(PermanentSendError) as caught:
            await notifier.send(notification())

    assert caught.value.reason == "client_error"
    assert "AUTH" in str(caught.value)
    assert (smtp.messages, smtp.login_attempts) == ([], [])
    assert_no_password(caught.value, notifier)


@pytest.mark.parametrize(
    ("pem", "tls", "problem"),
    [
        ("not a certificate\n", True, "5: notifiers.mail.ca: no PEM certificate found in it"),
        (None, True, "5: notifiers.mail: cannot read ca_file '{folder}/ca.pem': No such file or directory"),
        ("CA", False, "2: notifiers.mail: ca_file needs starttls or tls"),
    ],
    ids=["not-pem", "missing", "without-tls"],
)
def test_a_bad_ca_file_is_reported_at_load(
    tmp_path: Path, ca_pem: str, pem: str | None, tls: bool, problem: str
) -> None:
    if pem is not None:
        (tmp_path / "ca.pem").write_text(ca_pem if pem == "CA" else pem)
    path = tmp_path / "benchwatch.yaml"
    path.write_text(
        "notifiers:\n  mail:\n    type: email\n    host: smtp.example.com\n    ca_file: ca.pem\n"
        f"    starttls: {str(tls).lower()}\n    from: bw@example.com\n    to: [ops@example.com]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert [str(found) for found in caught.value.problems] == [f"{path}:" + problem.format(folder=tmp_path)]


def test_an_empty_ca_is_no_extra_ca() -> None:
    assert config(587, starttls=True, ca="").ca is None


def test_ca_is_checked_when_validated() -> None:
    with pytest.raises(ValidationError, match="no PEM certificate found in it"):
        config(587, starttls=True, ca="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
