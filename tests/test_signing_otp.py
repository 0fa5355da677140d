"""The e-mail OTP channel, end to end against a real SMTP server (aiosmtpd) started here:
sendOTP -> the mail reaches the owner's address with the code -> authorize -> signHash.

Also: STARTTLS with a login whose password lives in secrets.toml, an owner with no e-mail,
a server that is down, and the refusal at issuance of a qualified credential that no OTP
could ever reach."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from werkzeug.test import Client as WsgiClient

from core.config import SceauConfig, SigningConfig
from core.errors import ConfigError
from core.store.models import AuditEvent, Credential, OneTimeCode
from sceau.services import ca_service
from signing.app import create_app as create_signing
from tests.support.builders import LEGAL, NATURAL
from tests.support.clients import ApiClient
from tests.support.issuance import approved_proof
from tests.support.pki import Pki
from tests.support.signing import authorize, credential, sign_hash

SENDER = "signing@pki.example.com"
OWNER = cast(dict[str, str], NATURAL["subject"])["email"]
LEGAL_SUBJECT = cast(dict[str, str], LEGAL["subject"])
SMTP_USER = "sceau-otp"
SMTP_PASSWORD = "relay-secret-for-tests"


@dataclass
class Mailbox:
    """What the test SMTP server received, and the logins it saw."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(raw)))
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == SMTP_USER.encode()
            and data.password == SMTP_PASSWORD.encode()
        )
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1: the server's TLS context, and the file the
    client trusts (smtp_ca_file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_plain(mailbox: Mailbox) -> Iterator[int]:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def smtp_home(pki: Pki, home: Path, password: str | None = None, **signing: Any) -> SceauConfig:
    """The session's configuration with the "smtp" channel, in a home of its own (the
    secrets file with the SMTP password is this test's)."""
    home.mkdir(parents=True, exist_ok=True)
    if password is not None:
        secrets_file = home / "secrets.toml"
        secrets_file.write_text(f'smtp_password = "{password}"\n')
        secrets_file.chmod(0o600)
    settings = replace(
        pki.config.signing,
        otp_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_from=SENDER,
        smtp_timeout_seconds=5,
        **signing,
    )
    return replace(pki.config, home=home, signing=settings)


def signing_api(pki: Pki, config: SceauConfig, api: ApiClient) -> ApiClient:
    """The same platform's token against a signing service run with ``config``."""
    ctx = replace(pki.ctx, config=config)
    return ApiClient(WsgiClient(create_signing(ctx)), api.token, api.name)


def code_in(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(r"\b(\d{6})\b", body.decode())
    assert found is not None, body
    return found.group(1)


def live_codes(pki: Pki, cid: str) -> int:
    with pki.ctx.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OneTimeCode)
                .where(OneTimeCode.credential_id == cid)
            )
            or 0
        )


def audit_count(pki: Pki, action: str) -> int:
    with pki.ctx.db.read() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
            )
            or 0
        )


def test_otp_by_email_then_authorize_and_sign(
    pki: Pki, tmp_path: Path, mailbox: Mailbox, smtp_plain: int
) -> None:
    api = pki.client("person-qcp-n-qscd")
    cid = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    config = smtp_home(pki, tmp_path / "home", smtp_port=smtp_plain, smtp_security="none")
    csc = signing_api(pki, config, api)
    digest = hashlib.sha256(b"contract by e-mail").digest()

    sent = csc.post("/csc/v2/credentials/sendOTP", {"credentialID": cid})
    assert sent.status_code == 200, sent.json
    assert len(mailbox.messages) == 1
    recipients, message = mailbox.messages[0]
    # The address comes from the sealed identity proof the certificate was issued on.
    assert recipients == [OWNER]
    assert message["From"] == SENDER and message["To"] == OWNER
    code = code_in(message)
    assert not (tmp_path / "home" / config.signing.otp_outbox).exists()  # no file channel

    granted = authorize(csc, cid, [digest], code)
    assert granted.status_code == 200, granted.json
    signed = sign_hash(csc, cid, [digest], SAD=granted.json["SAD"])
    assert signed.status_code == 200, signed.json
    assert len(signed.json["signatures"]) == 1
    with pki.ctx.db.read() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "signing.otp_sent")
            .order_by(AuditEvent.seq.desc())
        ).first()
    assert event is not None and event.details == {"credential": cid, "channel": "smtp"}


def test_otp_over_starttls_with_a_login(pki: Pki, tmp_path: Path, mailbox: Mailbox) -> None:
    context, ca_file = server_tls(tmp_path)
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        api = pki.client("person-qcp-n-qscd")
        cid = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
        config = smtp_home(
            pki,
            tmp_path / "home",
            password=SMTP_PASSWORD,
            smtp_port=port,
            smtp_security="starttls",
            smtp_user=SMTP_USER,
            smtp_ca_file=str(ca_file),
        )
        assert SMTP_PASSWORD not in repr(config)  # the TOML section never holds it
        csc = signing_api(pki, config, api)
        sent = csc.post("/csc/v2/credentials/sendOTP", {"credentialID": cid})
        assert sent.status_code == 200, sent.json
        assert mailbox.logins == [SMTP_USER]
        assert len(mailbox.messages) == 1
        digest = hashlib.sha256(b"over TLS").digest()
        granted = authorize(csc, cid, [digest], code_in(mailbox.messages[0][1]))
        assert granted.status_code == 200, granted.json

        # A server whose certificate we do not trust gets no code.
        untrusted = smtp_home(
            pki,
            tmp_path / "home2",
            password=SMTP_PASSWORD,
            smtp_port=port,
            smtp_security="starttls",
            smtp_user=SMTP_USER,
        )
        refused = signing_api(pki, untrusted, api).post(
            "/csc/v2/credentials/sendOTP", {"credentialID": cid}
        )
        assert refused.status_code == 503, refused.json
        assert refused.json["error"] == "temporarily_unavailable"
        assert len(mailbox.messages) == 1
    finally:
        controller.stop()


def test_owner_without_email_gets_no_otp(
    pki: Pki, tmp_path: Path, mailbox: Mailbox, smtp_plain: int
) -> None:
    # Issued under the file channel (the session's configuration): LEGAL has no e-mail.
    api = pki.client("seal-qcp-l-qscd")
    pid = approved_proof(pki, api, LEGAL, "registry", 2)
    issued = api.post(
        "/ca/api/v1/certificates", {"profile": "seal-qcp-l-qscd", "identity_proof": pid}
    )
    assert issued.status_code == 201, issued.json
    cid = issued.json["credential_id"]
    config = smtp_home(pki, tmp_path / "home", smtp_port=smtp_plain, smtp_security="none")
    csc = signing_api(pki, config, api)
    before = audit_count(pki, "signing.refused")
    resp = csc.post("/csc/v2/credentials/sendOTP", {"credentialID": cid})
    assert resp.status_code == 400, resp.json
    assert audit_count(pki, "signing.refused") == before + 1
    assert resp.json["error"] == "invalid_request"
    assert "no address for the smtp OTP channel" in resp.json["error_description"]
    assert mailbox.messages == []
    assert live_codes(pki, cid) == 0


def test_smtp_server_down_leaves_no_live_code(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-qcp-n-qscd")
    cid = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    config = smtp_home(pki, tmp_path / "home", smtp_port=free_port(), smtp_security="none")
    resp = signing_api(pki, config, api).post("/csc/v2/credentials/sendOTP", {"credentialID": cid})
    assert resp.status_code == 503, resp.json
    assert resp.json["error"] == "temporarily_unavailable"
    assert live_codes(pki, cid) == 0


def test_qualified_credential_needs_a_reachable_owner(pki: Pki, tmp_path: Path) -> None:
    """With the smtp channel, a qualified key for a subject without e-mail would never sign:
    issuance refuses it before generating the key."""
    config = smtp_home(pki, tmp_path / "home", smtp_port=25, smtp_security="none")
    ca_http = WsgiClient(ca_service(replace(pki.ctx, config=config)))
    api = pki.client("seal-qcp-l-qscd", "seal-lcp", "person-qcp-n-qscd")
    pid = approved_proof(pki, api, LEGAL, "registry", 2)
    with pki.ctx.db.read() as session:
        credentials_before = session.scalar(select(func.count()).select_from(Credential))

    def issue(profile: str, proof: str) -> Any:
        return ca_http.post(
            "/ca/api/v1/certificates",
            json={"profile": profile, "identity_proof": proof},
            headers={"Authorization": f"Bearer {api.token}"},
        )

    refused = issue("seal-qcp-l-qscd", pid)
    assert refused.status_code == 422, refused.json
    assert refused.content_type == "application/problem+json"
    assert "subject.email" in refused.json["detail"]
    with pki.ctx.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Credential)) == credentials_before
    # A SCAL1 key needs no OTP; a natural person with an e-mail is reachable.
    assert issue("seal-lcp", pid).status_code == 201
    person = approved_proof(pki, api, NATURAL, "face-to-face", 1)
    assert issue("person-qcp-n-qscd", person).status_code == 201
    # With an e-mail in the legal person's proof, the qualified seal is issued.
    with_email = {**LEGAL, "subject": {**LEGAL_SUBJECT, "email": "seal@acme.example.com"}}
    pid2 = approved_proof(pki, api, with_email, "registry", 2)
    assert issue("seal-qcp-l-qscd", pid2).status_code == 201


def test_signing_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="otp_channel"):
        SigningConfig(otp_channel="pigeon")
    with pytest.raises(ConfigError, match="smtp_host"):
        SigningConfig(otp_channel="smtp")
    with pytest.raises(ConfigError, match="smtp_security"):
        SigningConfig(smtp_security="tls")
    assert SigningConfig().otp_address is None
    smtp = SigningConfig(otp_channel="smtp", smtp_host="mail", smtp_from=SENDER)
    assert smtp.otp_address == "email"


def test_smtp_login_needs_the_password_in_secrets(pki: Pki, tmp_path: Path) -> None:
    config = smtp_home(pki, tmp_path / "home", password="", smtp_user=SMTP_USER)
    with pytest.raises(ConfigError, match="smtp_password"):
        create_signing(replace(pki.ctx, config=config))
