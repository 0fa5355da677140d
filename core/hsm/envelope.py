"""Envelope encryption of personal data and evidence at rest, and blind search terms.

Each record gets its own random AES-256 data key; the record is encrypted with it (AES-GCM,
in the process) and the data key is encrypted by the wrapping key, which never leaves the
token. Reading a record therefore needs the token, and one token call per record; a copy
of the database alone holds no readable name, ID number or document image.

Both layers take the record's identity as associated data, so a ciphertext copied onto
another row does not open there.

Search over encrypted names works with blind terms: HMAC-SHA256 (key in the token) of a
normalised value, stored beside the row; a query computes the same term and looks it up.
"""

from __future__ import annotations

import json
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import HsmError
from core.hsm.keystore import KeyStore, SecretKind

WRAPPING_KEY = "sceau-evidence-wrapping"
INDEX_KEY = "sceau-evidence-index"
SECRET_KEYS = {WRAPPING_KEY: SecretKind.WRAPPING, INDEX_KEY: SecretKind.HMAC}
_NONCE = 12


@dataclass(frozen=True)
class Sealed:
    wrapped_key: bytes  # the data key, encrypted in the token
    ciphertext: bytes  # nonce || AES-GCM(data key) of the plaintext


class Sealer:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def seal(self, aad: str, plaintext: bytes) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(_NONCE)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad.encode())
        return Sealed(self.keys.encrypt(WRAPPING_KEY, data_key, aad.encode()), ciphertext)

    def open(self, aad: str, sealed: Sealed) -> bytes:
        data_key = self.keys.decrypt(WRAPPING_KEY, sealed.wrapped_key, aad.encode())
        nonce, body = sealed.ciphertext[:_NONCE], sealed.ciphertext[_NONCE:]
        try:
            return AESGCM(data_key).decrypt(nonce, body, aad.encode())
        except InvalidTag as exc:
            raise HsmError(f"sealed record {aad!r} does not open: altered or misplaced") from exc

    def seal_json(self, aad: str, record: dict[str, Any]) -> Sealed:
        return self.seal(aad, json.dumps(record, sort_keys=True, ensure_ascii=False).encode())

    def open_json(self, aad: str, sealed: Sealed) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.open(aad, sealed))
        return record

    def term(self, field: str, value: str) -> str:
        """The blind search term of ``value`` for ``field``: case, accents and spacing do
        not matter ("Élodie  DURAND" and "elodie durand" give the same term)."""
        data = f"{field}\x00{normalise(value)}".encode()
        return self.keys.hmac_sha256(INDEX_KEY, data).hex()


def normalise(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def ensure_secret_keys(keys: KeyStore) -> list[str]:
    """Generate the sealing keys missing from the token (key ceremony, idempotent);
    returns the labels generated."""
    made = []
    for label, kind in SECRET_KEYS.items():
        if not keys.has_secret(label):
            keys.generate_secret(label, kind)
            made.append(label)
    return made
