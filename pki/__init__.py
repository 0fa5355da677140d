"""What every PKI service shares: certificate profiles, the TBS builder, subject names, CSR
checks, QC statements and lints (bytes in, bytes out); and the records every service reads:
issuers, delegated signers, certificate status, identity-proof records, revocation."""
