"""pyHanko signs a PDF through our signHash with a qualified (SCAL2) credential and the
owner's OTP, then validates it against our chain.

pyHanko registers ASN.1 types in asn1crypto globally, so it runs in a subprocess; its
Signer asks this process for each signature over a pipe ("HASH <hex>" out, base64 in),
and this process answers through sendOTP, authorize and signHash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.judges import BIN
from tests.support.pki import Pki
from tests.support.signing import authorize, credential, otp, sign_hash

PYHANKO_SIGNER = """
import asyncio, hashlib, io, json, sys
from asn1crypto import algos, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

leaf, issuing, root = (x509.Certificate.load(open(p, "rb").read()) for p in sys.argv[1:4])


class CscSigner(signers.Signer):
    # The test's Signer: the digest goes to the CSC service, the signature comes back.
    async def async_sign_raw(self, data, digest_algorithm, dry_run=False):
        if dry_run:
            return bytes(72)  # the largest DER ECDSA-Sig-Value for P-256
        print("HASH " + hashlib.sha256(data).hexdigest(), flush=True)
        return __import__("base64").b64decode(sys.stdin.readline())


writer = PdfFileWriter()
content = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 720 Td ET"))
writer.insert_page(PageObject(contents=content, media_box=[0, 0, 595, 842]))
blank = io.BytesIO()
writer.write(blank)
signer = CscSigner(
    signing_cert=leaf,
    cert_registry=SimpleCertificateStore.from_certs([issuing, root]),
    signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
)
signed = signers.sign_pdf(
    IncrementalPdfFileWriter(io.BytesIO(blank.getvalue())),
    signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256"),
    signer=signer,
)
sig = PdfFileReader(signed).embedded_signatures[0]
status = validate_pdf_signature(sig, ValidationContext(trust_roots=[root]))
print("RESULT " + json.dumps({
    "intact": status.intact, "valid": status.valid, "trusted": status.trusted,
    "signer": status.signing_cert.subject.human_friendly,
}), flush=True)
"""


def test_pyhanko_signs_a_pdf_through_sign_hash(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-qcp-n-qscd")
    issued = credential(pki, api, "person-qcp-n-qscd")
    cid = issued["credential_id"]
    paths = []
    for name, pem in zip(
        ("leaf", "issuing", "root"), [issued["certificate"], *issued["chain"]], strict=True
    ):
        path = tmp_path / f"{name}.der"
        path.write_bytes(x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER))
        paths.append(str(path))
    result = None
    signatures = 0
    with subprocess.Popen(
        [str(BIN / "python"), "-c", PYHANKO_SIGNER, *paths],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        for line in process.stdout:
            if line.startswith("HASH "):
                digest = bytes.fromhex(line.split()[1])
                sad = authorize(api, cid, [digest], otp(pki, api, cid)).json["SAD"]
                resp = sign_hash(api, cid, [digest], SAD=sad)
                assert resp.status_code == 200, resp.json
                process.stdin.write(resp.json["signatures"][0] + "\n")
                process.stdin.flush()
                signatures += 1
            elif line.startswith("RESULT "):
                result = json.loads(line.removeprefix("RESULT "))
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert signatures == 1
    assert result is not None
    assert result["intact"] and result["valid"] and result["trusted"], result
    assert "Jeanne" in result["signer"]
