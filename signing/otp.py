"""OTP channels: how a one-time code reaches a credential's owner (sole control, SCAL2).

An ``OtpSender`` gets an ``OtpRecipient`` (the credential, and the owner's e-mail address
and mobile number when the identity proof has them) and the code. ``[signing] otp_channel``
chooses one: "file" writes each code under the home, for development and the tests; "smtp"
e-mails it. An SMS gateway plugs in the same way: a class with ``reachable`` and ``send``
that uses ``recipient.mobile``. No sender logs a code or puts it in an error text.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from core.config import SECRETS_FILE, SceauConfig, read_secrets
from core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OtpRecipient:
    credential_id: str
    email: str | None = None
    mobile: str | None = None


class OtpDeliveryError(Exception):
    """The channel could not take the code (server down, refused...). The text names the
    channel and the cause, never the code or the address."""


class OtpSender(Protocol):
    channel: str

    def reachable(self, recipient: OtpRecipient) -> bool:
        """Whether this channel has an address for the recipient (checked before a code is
        made, so that none is stored for nobody)."""

    def send(self, recipient: OtpRecipient, code: str, ttl_seconds: int) -> None:
        """Deliver ``code`` to the recipient or raise ``OtpDeliveryError``; never log it."""


class FileOtpSender:
    """Development channel: ``<outbox>/<credential id>.otp``, mode 0600, newest code only."""

    channel = "file"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def reachable(self, recipient: OtpRecipient) -> bool:
        return True

    def send(self, recipient: OtpRecipient, code: str, ttl_seconds: int) -> None:
        self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.outbox / f"{recipient.credential_id}.otp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(code)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "starttls" | "ssl" | "none"
    sender: str
    user: str = ""
    password: str = ""  # from secrets.toml
    ca_file: str = ""  # empty: the system's trust store
    timeout: float = 10.0

    def __repr__(self) -> str:  # the password never reaches a log line through repr
        return f"SmtpSettings({self.security}://{self.host}:{self.port})"


class SmtpOtpSender:
    """E-mails the code to the owner's address (stdlib smtplib), one connection per code."""

    channel = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def reachable(self, recipient: OtpRecipient) -> bool:
        return bool(recipient.email)

    def send(self, recipient: OtpRecipient, code: str, ttl_seconds: int) -> None:
        if not recipient.email:
            raise OtpDeliveryError("smtp: the credential's owner has no e-mail address")
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = recipient.email
        message["Subject"] = "Your signing code"
        message.set_content(
            f"Your one-time signing code is {code}\n\n"
            f"It authorises one signature request with your qualified credential "
            f"{recipient.credential_id} and works once, within {ttl_seconds // 60 or 1} "
            "minute(s). If you did not ask to sign a document, do not share it with anyone.\n"
        )
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.ca_file or None)
            smtp: smtplib.SMTP
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=context)
                if s.user:
                    smtp.login(s.user, s.password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            # The exception's text may quote the server; it never holds the code.
            raise OtpDeliveryError(f"smtp {s.host}:{s.port}: {type(exc).__name__}") from None
        log.info("OTP for %s e-mailed through %s:%d", recipient.credential_id, s.host, s.port)


def otp_sender(config: SceauConfig) -> OtpSender:
    """The channel ``[signing] otp_channel`` names, built from the configuration (and, for
    an SMTP login, the password in secrets.toml)."""
    signing = config.signing
    if signing.otp_channel == "smtp":
        password = ""
        if signing.smtp_user:
            password = read_secrets(config.home / SECRETS_FILE).get("smtp_password", "")
            if not password:
                raise ConfigError(
                    f"[signing] smtp_user is set: {config.home / SECRETS_FILE} needs smtp_password"
                )
        ca_file = signing.smtp_ca_file
        if ca_file and not Path(ca_file).is_absolute():
            ca_file = str(config.home / ca_file)
        return SmtpOtpSender(
            SmtpSettings(
                host=signing.smtp_host,
                port=signing.smtp_port,
                security=signing.smtp_security,
                sender=signing.smtp_from,
                user=signing.smtp_user,
                password=password,
                ca_file=ca_file,
                timeout=float(signing.smtp_timeout_seconds),
            )
        )
    return FileOtpSender(config.home / signing.otp_outbox)
