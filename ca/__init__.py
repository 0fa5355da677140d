"""The issuance service: the certificate API (``/ca/api/v1``), its OpenAPI description and
the issuance pipeline (``ca.issuance``)."""
