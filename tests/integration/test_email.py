"""Email over STARTTLS and implicit TLS with authentication, against aiosmtpd."""

import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.stack import free_port
from services.notifier.channels import Refused, _email
from shared.settings import Settings
from tests.support.smtp import Inbox

USER, PASSWORD = "fabu", "smtp-pass-for-tests"


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.pem", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    login, password = getattr(data, "login", None), getattr(data, "password", None)
    ok = login == USER.encode() and password == PASSWORD.encode()
    # handled=False: aiosmtpd answers the failure (535) itself.
    return AuthResult(success=ok, handled=ok)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Inbox, Path]]:
    cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox(free_port())
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=inbox.port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        yield inbox, cert
    finally:
        controller.stop()


def message(subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "fabu@example.com", "team@example.com", subject
    mail.set_content("body")
    return mail


async def test_starttls_with_login_delivers_and_wrong_settings_are_refused(
    secured: tuple[Inbox, Path],
) -> None:
    inbox, cert = secured
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_starttls=True,
        smtp_username=USER,
        smtp_password=PASSWORD,
        smtp_ca_file=str(cert),
    )

    await _email(settings, message("over starttls"))

    assert [m["Subject"] for m in inbox.messages] == ["over starttls"]
    with pytest.raises(Refused, match="535"):
        await _email(settings.model_copy(update={"smtp_password": "wrong"}), message("x"))
    with pytest.raises(Refused, match="STARTTLS"):
        await _email(settings.model_copy(update={"smtp_starttls": False}), message("x"))
    # The password never shows in the settings' text.
    assert PASSWORD not in repr(settings)
    assert len(inbox.messages) == 1
