"""Checks an RFC 3161 timestamp token over given bytes, without the TSA (ca/ imports no
service): the message imprint, the CMS signature of the signed attributes, their
messageDigest over TSTInfo, and the TSU certificate's chain to a trusted root of ours.

What ``openssl ts -verify -data F -CAfile root.pem`` checks, done in-process so that
``sceau audit verify`` needs no subprocess and can name the checkpoint that fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class TimestampInvalid(Exception):  # noqa: N818 - a verdict, named for what it says
    pass


@dataclass(frozen=True)
class TimestampFacts:
    gen_time: datetime
    serial: int
    policy: str
    tsu_subject: str


def _hash(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]
    except KeyError:
        raise TimestampInvalid(f"hash algorithm {name} not accepted") from None


def _verify_signature(
    cert: x509.Certificate, signature: bytes, data: bytes, algo: str, digest: str
) -> None:
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_hash(digest)))
        elif isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(_hash(digest)), padding.PSS.DIGEST_LENGTH)
                if algo == "rsassa_pss"
                else padding.PKCS1v15()
            )
            key.verify(signature, data, pad, _hash(digest))
        else:
            raise TimestampInvalid("unsupported TSU key type")
    except InvalidSignature:
        raise TimestampInvalid("the token's signature does not verify") from None


def _chain_to_root(
    leaf: x509.Certificate, pool: list[x509.Certificate], roots: list[x509.Certificate]
) -> None:
    """Walk issuer links from the TSU certificate up to one of ``roots``."""
    cert = leaf
    for _ in range(5):
        for root in roots:
            if cert.issuer == root.subject:
                try:
                    cert.verify_directly_issued_by(root)
                    return
                except (ValueError, TypeError, InvalidSignature):
                    pass
        parents = [c for c in pool if c.subject == cert.issuer and c != cert]
        for parent in parents:
            try:
                cert.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature):
                continue
            cert = parent
            break
        else:
            break
    raise TimestampInvalid("the TSU certificate does not chain to a trusted root")


def verify_token(
    token_der: bytes, data: bytes, *, roots: list[bytes], intermediates: Sequence[bytes] = ()
) -> TimestampFacts:
    """Verify a TimeStampToken (CMS ContentInfo) over ``data``; raise TimestampInvalid."""
    try:
        info = cms.ContentInfo.load(token_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise TimestampInvalid("not a CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TimestampInvalid("the signed content is not a TSTInfo")
        tst_der = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_der, strict=True)
        imprint = tst["message_imprint"]
        imprint_alg = imprint["hash_algorithm"]["algorithm"].native
        expected = hashlib.new(imprint_alg, data).digest()
        if imprint["hashed_message"].native != expected:
            raise TimestampInvalid("the message imprint is not the hash of the data")
        (signer_info,) = signed["signer_infos"]
        digest_alg = signer_info["digest_algorithm"]["algorithm"].native
        attrs = {a["type"].native: a["values"][0] for a in signer_info["signed_attrs"]}
        if attrs.get("content_type") is None or attrs["content_type"].native != "tst_info":
            raise TimestampInvalid("signed content-type attribute missing or wrong")
        if attrs.get("message_digest") is None or (
            attrs["message_digest"].native != hashlib.new(digest_alg, tst_der).digest()
        ):
            raise TimestampInvalid("the messageDigest attribute does not match TSTInfo")
        # RFC 5652 §5.4: the signature covers the attributes with their SET OF tag.
        signed_attrs = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        certs = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in (signed["certificates"] or [])
            if c.name == "certificate"
        ]
        sid = signer_info["sid"]
        if sid.name != "issuer_and_serial_number":
            raise TimestampInvalid("the token names its signer by key identifier only")
        serial = sid.chosen["serial_number"].native
        tsu = next((c for c in certs if c.serial_number == serial), None)
        if tsu is None:
            raise TimestampInvalid("the TSU certificate is not in the token")
        sig_algo = signer_info["signature_algorithm"].signature_algo
        _verify_signature(tsu, signer_info["signature"].native, signed_attrs, sig_algo, digest_alg)
        gen_time: datetime = tst["gen_time"].native
        if not tsu.not_valid_before_utc <= gen_time <= tsu.not_valid_after_utc:
            raise TimestampInvalid("genTime is outside the TSU certificate's validity")
        try:
            eku = tsu.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            raise TimestampInvalid("the TSU certificate has no extended key usage") from None
        if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
            raise TimestampInvalid("the signer is not a timestamping unit (RFC 3161 §2.3)")
        pool = certs + [x509.load_der_x509_certificate(c) for c in intermediates]
        _chain_to_root(tsu, pool, [x509.load_der_x509_certificate(r) for r in roots])
        return TimestampFacts(
            gen_time=gen_time,
            serial=tst["serial_number"].native,
            policy=tst["policy"].dotted,
            tsu_subject=tsu.subject.rfc4514_string(),
        )
    except TimestampInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampInvalid(f"not a well-formed timestamp token ({exc})") from None
