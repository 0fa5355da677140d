"""CSR intake: parse, prove possession, judge the key. Only the public key is kept; the
CSR's subject and extensions are the requester's claims and are ignored."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.errors import ErrorKind, SceauError
from core.hsm.algorithms import KeyAlgorithm, key_algorithm_of
from pki.profiles import Profile

MAX_CSR_BYTES = 16384  # an RSA-4096 CSR with extensions is under 2 KiB of PEM
WEAK_HASHES = (hashes.MD5, hashes.SHA1)


@dataclass(frozen=True)
class CheckedKey:
    spki_der: bytes
    algorithm: KeyAlgorithm


def check_csr(csr_pem: str, profile: Profile) -> CheckedKey:
    if len(csr_pem) > MAX_CSR_BYTES:
        raise SceauError(ErrorKind.BAD_CSR, f"CSR larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        public_key = csr.public_key()
        signature_ok = csr.is_signature_valid
        hash_algorithm = csr.signature_hash_algorithm
    except (ValueError, TypeError, UnicodeEncodeError, x509.UnsupportedGeneralNameType) as exc:
        raise SceauError(ErrorKind.BAD_CSR, "csr is not a PEM PKCS#10 request") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd keys/signatures
        raise SceauError(
            ErrorKind.BAD_CSR, f"CSR cannot be processed: {type(exc).__name__}"
        ) from exc
    if not signature_ok:
        raise SceauError(
            ErrorKind.BAD_CSR, "CSR signature does not verify (no proof of possession)"
        )
    if hash_algorithm is None or isinstance(hash_algorithm, WEAK_HASHES):
        raise SceauError(ErrorKind.BAD_CSR, "CSR signed with a weak or no hash algorithm")
    algorithm = key_algorithm_of(public_key)
    if algorithm is None:
        raise SceauError(
            ErrorKind.BAD_KEY,
            "key type or size not accepted (ECDSA P-256/P-384/P-521 or RSA 3072/4096; "
            "TS 119 312 forbids new RSA keys under 3000 bits)",
        )
    if algorithm not in profile.key_algorithms:
        allowed = ", ".join(sorted(profile.key_algorithms))
        raise SceauError(
            ErrorKind.BAD_KEY, f"profile {profile.id} accepts {allowed}, not {algorithm}"
        )
    if isinstance(public_key, rsa.RSAPublicKey):
        e = public_key.public_numbers().e
        # TS 119 312: odd exponent, 2^16 < e < 2^256.
        if e % 2 == 0 or not 2**16 < e < 2**256:
            raise SceauError(ErrorKind.BAD_KEY, "RSA public exponent must be odd, 2^16 < e < 2^256")
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CheckedKey(spki, algorithm)
