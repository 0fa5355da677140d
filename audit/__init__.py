"""The audit service: the auditors' read-only UI at ``/audit``, its queries and exports,
and the signed, timestamped checkpoints of the audit log (``audit.checkpoints``)."""
