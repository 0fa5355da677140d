"""CSC's refusal (CSC API v2 section 10: ``{"error", "error_description"}``), raised by the
request models when a body is wrong and by the engine when the state forbids a call; the
views render it. Its description never holds a hash, SAD or OTP: it is answered, logged and
written to the audit chain."""

from __future__ import annotations


class CscError(Exception):
    """A refusal in CSC terms: the HTTP status, CSC's error code and its description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def invalid(description: str) -> CscError:
    """CSC's usual refusal: 400 invalid_request."""
    return CscError(400, "invalid_request", description)
