"""Key and signature algorithms Sceau accepts, and their X.509 encodings.

ETSI TS 119 312 V2.1.1 (standards.md section 9): ECDSA on P-256/P-384/P-521 with the hash
matching the curve size; RSA >= 3000 bits (1900..2999 is legacy and may not be newly
certified after 2026-12-31, so we refuse it outright); RSA-PSS is recommended over
PKCS#1 v1.5, which is legacy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import algos
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class KeyAlgorithm(StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    EC_P521 = "ec-p521"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @property
    def is_ec(self) -> bool:
        return self.value.startswith("ec-")

    @property
    def curve_name(self) -> str:
        """The SEC 2 name of the curve (what asn1crypto and PKCS#11 params use)."""
        return {"ec-p256": "secp256r1", "ec-p384": "secp384r1", "ec-p521": "secp521r1"}[self.value]

    @property
    def rsa_bits(self) -> int:
        return int(self.value.removeprefix("rsa-"))


class HashAlgorithm(StrEnum):
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    def cryptography_hash(self) -> hashes.HashAlgorithm:
        if self is HashAlgorithm.SHA256:
            return hashes.SHA256()
        if self is HashAlgorithm.SHA384:
            return hashes.SHA384()
        return hashes.SHA512()

    @property
    def digest_size(self) -> int:
        return {"sha256": 32, "sha384": 48, "sha512": 64}[self.value]


class Padding(StrEnum):
    ECDSA = "ecdsa"
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"


@dataclass(frozen=True)
class SignatureScheme:
    """How a key signs: the hash and, for RSA, the padding. PSS salt = hash length."""

    hash: HashAlgorithm
    padding: Padding

    def algorithm_identifier(self) -> algos.SignedDigestAlgorithm:
        """The AlgorithmIdentifier that goes into TBSCertificate.signature and the certificate."""
        if self.padding is Padding.ECDSA:
            return algos.SignedDigestAlgorithm({"algorithm": f"{self.hash.value}_ecdsa"})
        if self.padding is Padding.PKCS1V15:
            return algos.SignedDigestAlgorithm({"algorithm": f"{self.hash.value}_rsa"})
        return algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams(
                    {
                        "hash_algorithm": {"algorithm": self.hash.value},
                        "mask_gen_algorithm": {
                            "algorithm": "mgf1",
                            "parameters": {"algorithm": self.hash.value},
                        },
                        "salt_length": self.hash.digest_size,
                    }
                ),
            }
        )


def default_scheme(key: KeyAlgorithm) -> SignatureScheme:
    """The scheme a CA key of this type signs with: hash size matched to the curve; PSS for RSA."""
    if key is KeyAlgorithm.EC_P256:
        return SignatureScheme(HashAlgorithm.SHA256, Padding.ECDSA)
    if key is KeyAlgorithm.EC_P384:
        return SignatureScheme(HashAlgorithm.SHA384, Padding.ECDSA)
    if key is KeyAlgorithm.EC_P521:
        return SignatureScheme(HashAlgorithm.SHA512, Padding.ECDSA)
    return SignatureScheme(
        HashAlgorithm.SHA256 if key.rsa_bits < 4096 else HashAlgorithm.SHA384, Padding.PSS
    )


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def key_algorithm_of(public_key: object) -> KeyAlgorithm | None:
    """Classify a public key; None when Sceau does not accept its type or size at all."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {
            "secp256r1": KeyAlgorithm.EC_P256,
            "secp384r1": KeyAlgorithm.EC_P384,
            "secp521r1": KeyAlgorithm.EC_P521,
        }.get(public_key.curve.name)
    if isinstance(public_key, rsa.RSAPublicKey):
        return {3072: KeyAlgorithm.RSA_3072, 4096: KeyAlgorithm.RSA_4096}.get(public_key.key_size)
    return None
