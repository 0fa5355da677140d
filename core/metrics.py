"""Prometheus metrics shared by every service (prometheus-client default registry)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "sceau_http_requests_total", "HTTP requests", ["service", "endpoint", "method", "status"]
)
LATENCY = Histogram(
    "sceau_http_request_seconds",
    "HTTP request latency",
    ["service", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ERRORS = Counter("sceau_http_errors_total", "Problem answers by kind", ["service", "kind"])
CERTIFICATES_ISSUED = Counter("sceau_certificates_issued_total", "Certificates issued", ["profile"])
CERTIFICATES_REVOKED = Counter(
    "sceau_certificates_revoked_total", "Certificates revoked", ["profile"]
)
ISSUANCE_REFUSED = Counter(
    "sceau_issuance_refused_total", "Issuances refused by pre-issuance lint", ["profile"]
)
AUTH_FAILURES = Counter(
    "sceau_auth_failures_total", "Requests refused for a missing, unknown or disabled API token"
)
AUTH_THROTTLED = Counter(
    "sceau_auth_throttled_total", "Requests refused (429) after too many failed token attempts"
)
# 1 when the dependency answered its last check, 0 when it did not: set by /readyz
# (core.http.readiness) and by the key store when it loses or finds the token again.
DEPENDENCY_UP = Gauge(
    "sceau_dependency_up", "Whether a dependency answers (1) or not (0)", ["dependency"]
)
