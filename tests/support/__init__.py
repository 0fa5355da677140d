"""Code the tests share, imported from here (never from a test module or conftest.py):

- pki: the test PKI (Pki, make_home, backend_home, BACKENDS, PUBLIC_URL); conftest.py makes
  the fixtures
- clients: ApiClient (a platform's bearer token, in process) and http_request (loopback)
- builders: identity-proof bodies (NATURAL, LEGAL, NATURAL_FULL, LEGAL_FULL), CSRs, keys
- evidence: PNG, JPEG and PDF files built by hand, and their upload
- issuance: approved proofs, certificates and revocations through the API
- rows: rows counted or written straight in the database
- judges: OpenSSL, pkilint and pkcs11-tool runs (BIN, run)
- ocsp, tsa, crl, signing, audit: each protocol as a client speaks it
- officers: officer and auditor accounts, logins without a browser
- browser: live server thread, Chromium, screenshots
- servers: `sceau serve` in a process group (also used by tests/benchmarks/)
- postgres: the throwaway PostgreSQL cluster
"""
