"""The PKCS#11 token: the key store, SoftHSM2 set-up for development, the algorithms we
sign with, and the envelope encryption of records at rest under token-held keys."""
