"""CSC API v2 request bodies as typed, frozen models: the wire format ends here.

The views read each body with ``core.http.requests.load_json`` and give the object to the
call's model (``SignHashRequest.parse(data)``); the engine gets the model and never sees a
raw JSON value. What is wire format is done here: base64 hashes decoded to bytes, the CSC v1
names pyHanko sends (``hash``, ``hashAlgo``), OIDs turned into ``SignAlgorithm`` and
``HashAlgorithm``, RSASSA-PSS ``signAlgoParams`` read, strings and numbers told apart (a
``"1"`` is no ``numSignatures``, a ``1`` no ``certInfo``). What depends on stored state (the
credential, its key, its certificate, the SAD, the OTP) is the engine's.

A failure is CSC's 400 ``invalid_request`` with the description CSC 11.x gives for it
("Missing (or invalid type) string parameter credentialID"): the first wrong parameter in
the order the fields are declared, which is the order the engine checked them in before
these models existed. Descriptions never quote a value (the models hide inputs in errors).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from asn1crypto import algos
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from core.hsm.algorithms import HashAlgorithm, Padding, SignatureScheme
from signing.errors import invalid

# One signHash call signs at most this many hashes (a batch of invoices; bounded so that one
# call cannot hold the token's lock for long: ~13 ms at SoftHSM2's P-256 rate).
MAX_HASHES = 100

HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": HashAlgorithm.SHA256,
    "2.16.840.1.101.3.4.2.2": HashAlgorithm.SHA384,
    "2.16.840.1.101.3.4.2.3": HashAlgorithm.SHA512,
}


class SignAlgorithm(StrEnum):
    """The signAlgo OIDs signHash takes (CSC 11.9): the key's algorithm, whose hash comes
    from hashAlgorithmOID (or RSASSA-PSS's signAlgoParams), or a combined hash-and-sign
    OID. Declared in the order CSC info lists them."""

    EC_PUBLIC_KEY = "1.2.840.10045.2.1"
    ECDSA_SHA256 = "1.2.840.10045.4.3.2"
    ECDSA_SHA384 = "1.2.840.10045.4.3.3"
    ECDSA_SHA512 = "1.2.840.10045.4.3.4"
    RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
    RSASSA_PSS = "1.2.840.113549.1.1.10"
    SHA256_RSA = "1.2.840.113549.1.1.11"
    SHA384_RSA = "1.2.840.113549.1.1.12"
    SHA512_RSA = "1.2.840.113549.1.1.13"

    @property
    def padding(self) -> Padding:
        return _PADDINGS[self]

    @property
    def hash(self) -> HashAlgorithm | None:
        """The hash a combined OID names; None for a bare key algorithm."""
        return _COMBINED_HASHES.get(self)


_PADDINGS = {
    SignAlgorithm.EC_PUBLIC_KEY: Padding.ECDSA,
    SignAlgorithm.ECDSA_SHA256: Padding.ECDSA,
    SignAlgorithm.ECDSA_SHA384: Padding.ECDSA,
    SignAlgorithm.ECDSA_SHA512: Padding.ECDSA,
    SignAlgorithm.RSA_ENCRYPTION: Padding.PKCS1V15,
    SignAlgorithm.RSASSA_PSS: Padding.PSS,
    SignAlgorithm.SHA256_RSA: Padding.PKCS1V15,
    SignAlgorithm.SHA384_RSA: Padding.PKCS1V15,
    SignAlgorithm.SHA512_RSA: Padding.PKCS1V15,
}
_COMBINED_HASHES = {
    SignAlgorithm.ECDSA_SHA256: HashAlgorithm.SHA256,
    SignAlgorithm.ECDSA_SHA384: HashAlgorithm.SHA384,
    SignAlgorithm.ECDSA_SHA512: HashAlgorithm.SHA512,
    SignAlgorithm.SHA256_RSA: HashAlgorithm.SHA256,
    SignAlgorithm.SHA384_RSA: HashAlgorithm.SHA384,
    SignAlgorithm.SHA512_RSA: HashAlgorithm.SHA512,
}
# What an EC key and an RSA key can do, as credentials/info lists them (key OID first).
EC_SIGN_ALGORITHMS = [a for a in SignAlgorithm if a.padding is Padding.ECDSA]
RSA_SIGN_ALGORITHMS = [a for a in SignAlgorithm if a.padding is not Padding.ECDSA]
# The parameters of every signAlgo but RSASSA-PSS are absent or this ASN.1 NULL.
_ASN1_NULL = base64.b64encode(b"\x05\x00").decode()
_BASE64 = {"type": "string", "contentEncoding": "base64"}


def _refusal(description: str) -> PydanticCustomError:
    """A failure whose text is CSC's: answered as it is (see ``CscRequest.parse``)."""
    return PydanticCustomError("csc", "{description}", {"description": description})


def _missing(kind: str, name: str) -> str:
    return f"Missing (or invalid type) {kind} parameter {name}"


def _digests(value: object) -> tuple[bytes, ...]:
    """``hashes``: 1 to MAX_HASHES base64 strings, decoded (the signHash hot path: one pass,
    and the count is checked before anything is decoded)."""
    if not isinstance(value, list) or not value:
        raise _refusal(_missing("array", "hashes"))
    if len(value) > MAX_HASHES:
        raise _refusal(f"Too many hashes: at most {MAX_HASHES} per call")
    digests = []
    for item in value:
        if not isinstance(item, str):
            raise _refusal("Invalid Base64 hashes string parameter")
        try:
            digests.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise _refusal("Invalid Base64 hashes string parameter") from None
    return tuple(digests)


def _sign_algorithm(value: object) -> SignAlgorithm:
    if not isinstance(value, str):
        raise _refusal(_missing("string", "signAlgo"))
    try:
        return SignAlgorithm(value)
    except ValueError:
        raise _refusal("Invalid parameter signAlgo") from None


def _hash_algorithm(value: object) -> HashAlgorithm:
    if not isinstance(value, str):
        raise _refusal(_missing("string", "hashAlgorithmOID"))
    try:
        return HASH_OIDS[value]
    except KeyError:
        raise _refusal("Invalid parameter hashAlgorithmOID: SHA-256, SHA-384 or SHA-512") from None


def _within_multisign(count: int) -> int:
    if count > MAX_HASHES:
        raise _refusal(f"Numbers of signatures is too high: multisign is {MAX_HASHES}")
    return count


# Base64 hashes, decoded. Their length is checked against the hash algorithm by signHash.
Digests = Annotated[
    tuple[bytes, ...],
    PlainValidator(_digests),
    WithJsonSchema({"type": "array", "items": _BASE64, "minItems": 1, "maxItems": MAX_HASHES}),
]


class CscRequest(BaseModel):
    """What every CSC request model shares: frozen, and parsed by :meth:`parse`."""

    # Unknown parameters are ignored, as they always were here: CSC clients send ones we do
    # not use (clientData, lang, userID...). Inputs stay out of errors: one may be an OTP.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,
        field_title_generator=lambda name, field: field.alias or name,  # schema: wire names
    )

    # The description of a parameter that pydantic itself refused (missing, wrong JSON
    # type): by wire name, in CSC's words. Validators above raise their own.
    refusals: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: object) -> object:
        # A null parameter has always been read as an absent one (body.get); clients that
        # serialise an unset field send null.
        if isinstance(data, dict):
            return {name: value for name, value in data.items() if value is not None}
        return data

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> Self:
        """``data`` (a JSON object) as this request, or CscError(invalid_request)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            raise invalid(cls._describe(first)) from exc

    @classmethod
    def _describe(cls, error: ErrorDetails) -> str:
        if error["type"] == "csc":
            return error["msg"]
        name = str(error["loc"][0]) if error["loc"] else "body"
        return cls.refusals.get(name, f"Invalid parameter {name}")


class ServiceInfoRequest(CscRequest):
    """CSC 11.1 info. Its one parameter, lang, is ignored: the answer is in en-US."""


class CredentialListRequest(CscRequest):
    """CSC 11.4 credentials/list. Paging (maxResults, pageToken) and credInfo are not
    supported and ignored: the answer holds all the caller's credential ids."""


class CredentialRequest(CscRequest):
    """A call about one credential of the caller."""

    refusals: ClassVar[Mapping[str, str]] = {"credentialID": _missing("string", "credentialID")}

    credential_id: str = Field(alias="credentialID", strict=True, min_length=1)


CertificateChoice = Literal["none", "single", "chain"]


class CredentialInfoRequest(CredentialRequest):
    """CSC 11.5 credentials/info. authInfo changes nothing: the authorisation description
    is always given (clients need it to know whether to ask their user for an OTP)."""

    certificates: CertificateChoice = "single"
    cert_info: bool = Field(False, alias="certInfo", strict=True)
    auth_info: bool = Field(False, alias="authInfo", strict=True)


class SendOtpRequest(CredentialRequest):
    """CSC 11.7 credentials/sendOTP."""


class AuthorizeRequest(CredentialRequest):
    """CSC 11.6 credentials/authorize (explicit, with the OTP that sendOTP sent)."""

    refusals: ClassVar[Mapping[str, str]] = {
        **CredentialRequest.refusals,
        "numSignatures": _missing("integer", "numSignatures"),
        "hashes": _missing("array", "hashes"),
        "OTP": _missing("string", "OTP"),
    }

    # Strict: a bool or a float is no count.
    num_signatures: Annotated[int, AfterValidator(_within_multisign)] = Field(
        alias="numSignatures",
        strict=True,
        json_schema_extra={"minimum": 1, "maximum": MAX_HASHES},
    )
    hashes: Digests = Field(alias="hashes", validation_alias=AliasChoices("hashes", "hash"))
    otp: str = Field(alias="OTP", strict=True, min_length=1)

    @model_validator(mode="after")
    def _count_matches(self) -> Self:
        if self.num_signatures != len(self.hashes):
            raise _refusal("Invalid value for parameter numSignatures: it must count the hashes")
        return self


class SignHashRequest(CredentialRequest):
    """CSC 11.9 signatures/signHash. signAlgo is a combined OID, or the key's OID with
    hashAlgorithmOID; RSASSA-PSS may carry signAlgoParams, which must say MGF1 with the same
    hash and salt = hash length. The CSC v1 names hash and hashAlgo are accepted too."""

    refusals: ClassVar[Mapping[str, str]] = {
        **CredentialRequest.refusals,
        "SAD": _missing("string", "SAD"),
        "hashes": _missing("array", "hashes"),
        "signAlgo": _missing("string", "signAlgo"),
        "signAlgoParams": _missing("string", "signAlgoParams"),
        "operationMode": "Invalid parameter operationMode: only synchronous (S)",
    }

    # Required by SCAL2 credentials only: its absence is the engine's to refuse (403).
    sad: str | None = Field(None, alias="SAD", strict=True)
    hashes: Digests = Field(alias="hashes", validation_alias=AliasChoices("hashes", "hash"))
    hash_algorithm: Annotated[
        HashAlgorithm | None,
        PlainValidator(_hash_algorithm),
        WithJsonSchema({"type": "string", "enum": list(HASH_OIDS)}),
    ] = Field(
        None,
        alias="hashAlgorithmOID",
        validation_alias=AliasChoices("hashAlgorithmOID", "hashAlgo"),
    )
    sign_algo: Annotated[
        SignAlgorithm,
        PlainValidator(_sign_algorithm),
        WithJsonSchema({"type": "string", "enum": [a.value for a in SignAlgorithm]}),
    ] = Field(alias="signAlgo")
    sign_algo_params: Annotated[str | None, WithJsonSchema(_BASE64)] = Field(
        None, alias="signAlgoParams", strict=True
    )
    # Validated, never read: asynchronous signing ("A") is not offered.
    operation_mode: Literal["S"] = Field("S", alias="operationMode")

    _scheme: SignatureScheme = PrivateAttr()

    @property
    def scheme(self) -> SignatureScheme:
        """How the hashes are to be signed: signAlgo, hashAlgorithmOID and signAlgoParams
        read together. Whether the credential's key can do it is the engine's to check."""
        return self._scheme

    @model_validator(mode="after")
    def _resolve_scheme(self) -> Self:
        # The one assignment after validation: the frozen fields stay as they were parsed.
        self._scheme = _scheme(self.sign_algo, self.hash_algorithm, self.sign_algo_params)
        size = self._scheme.hash.digest_size
        for digest in self.hashes:
            if len(digest) != size:
                raise _refusal(
                    f"Invalid digest value length: {self._scheme.hash.value} hashes have "
                    f"{size} bytes, one has {len(digest)}"
                )
        return self


def _scheme(
    sign_algo: SignAlgorithm, hash_algorithm: HashAlgorithm | None, params_b64: str | None
) -> SignatureScheme:
    """signAlgo with hashAlgorithmOID and signAlgoParams; an empty signAlgoParams is none."""
    pss = sign_algo is SignAlgorithm.RSASSA_PSS
    pss_hash = _pss_hash(params_b64) if pss and params_b64 else None
    if params_b64 and not pss and params_b64 != _ASN1_NULL:
        raise _refusal("Invalid parameter signAlgoParams: this signAlgo takes none")
    combined = sign_algo.hash
    if combined is not None:
        if hash_algorithm is not None and hash_algorithm is not combined:
            raise _refusal("Invalid parameter hashAlgorithmOID: it contradicts signAlgo")
        return SignatureScheme(combined, sign_algo.padding)
    chosen = hash_algorithm or pss_hash
    if chosen is None:
        raise _refusal(_missing("string", "hashAlgorithmOID"))
    if pss_hash is not None and pss_hash is not chosen:
        raise _refusal("Invalid parameter signAlgoParams: its hash contradicts the hash's")
    return SignatureScheme(chosen, sign_algo.padding)


def _pss_hash(params_b64: str) -> HashAlgorithm:
    """RSASSA-PSS-params (RFC 8017 A.2.3) as signAlgoParams: we sign with MGF1 over the same
    hash, salt = hash length, trailer 1 (what TS 119 312 and pyHanko use); others are
    refused rather than silently signed differently."""
    try:
        params = algos.RSASSAPSSParams.load(base64.b64decode(params_b64, validate=True))
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        mgf_hash = mgf["parameters"]["algorithm"].native
        salt = params["salt_length"].native
        trailer = params["trailer_field"].native
        mgf_name = mgf["algorithm"].native
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise _refusal("Invalid parameter signAlgoParams: not RSASSA-PSS-params") from None
    try:
        hash_algorithm = HashAlgorithm(hash_name)
    except ValueError:
        raise _refusal("Invalid parameter signAlgoParams: SHA-256, SHA-384 or SHA-512") from None
    if (
        mgf_name != "mgf1"
        or mgf_hash != hash_name
        or salt != hash_algorithm.digest_size
        or trailer != "trailer_field_bc"
    ):
        raise _refusal(
            "Invalid parameter signAlgoParams: only MGF1 with the same hash, salt length = "
            "hash length and trailer 1"
        )
    return hash_algorithm
