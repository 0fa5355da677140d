"""Data only: the certificate profiles (``profiles/*.toml``) and the certification policy
documents (``*.md``). The code that reads them is in ``pki.profiles`` and
``crl.policy_facts``."""
