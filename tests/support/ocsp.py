"""OCSP as a relying party speaks it: requests built with cryptography, sent by POST or in
the URL of a GET (RFC 6960 appendix A.1), answers checked down to the responder's signature."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.clients import ApiClient
from tests.support.issuance import issue

OCSP_REQUEST = "application/ocsp-request"


def issue_leaf(api: ApiClient, profile: str = "person-lcp") -> tuple[x509.Certificate, list[bytes]]:
    """A fresh certificate and its chain (DER, issuing CA first, root last)."""
    issued = issue(api, profile)
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in issued["chain"]]
    leaf = x509.load_pem_x509_certificate(issued["certificate"].encode())
    return leaf, [c.public_bytes(serialization.Encoding.DER) for c in chain]


def request_der(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm | None = None,
    nonce: bytes | None = None,
) -> bytes:
    algorithm = algorithm or hashes.SHA1()  # noqa: S303 - CertID hash, OpenSSL's default
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def get_path(der: bytes, encode: str = "standard") -> str:
    """The GET path of a request: base64 in the ``standard`` alphabet, ``urlsafe`` without
    padding, or ``percent``-encoded, all of which clients send."""
    text = base64.b64encode(der).decode()
    if encode == "urlsafe":
        text = base64.urlsafe_b64encode(der).decode().rstrip("=")
    elif encode == "percent":
        text = quote(text, safe="")
    return f"/ocsp/{text}"


def verified(body: bytes, issuer: bytes) -> ocsp.OCSPResponse:
    """A successful response, signed by a delegated responder certified by ``issuer``."""
    response = ocsp.load_der_ocsp_response(body)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    (responder,) = response.certificates
    responder.verify_directly_issued_by(x509.load_der_x509_certificate(issuer))
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    point = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert (
        response.responder_key_hash == hashlib.sha1(point, usedforsecurity=False).digest()
    )  # byKey
    assert response.signature_hash_algorithm is not None
    public_key.verify(
        response.signature,
        response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm),
    )
    return response
