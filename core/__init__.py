"""The platform every service stands on, with no X.509 policy and no service in it:
configuration, errors, the service context, jobs, metrics, the HSM (``hsm/``), the database
(``store/``), the hash-chained audit log (``audit/``), HTTP plumbing (``http/``), accounts
(``accounts/``) and the officers' web UI machinery (``webui/``)."""

__version__ = "0.1.0"
