"""HTTP errors of the server: every error answer is one line of JSON, ``{"error": {"message", "type", "code"}}``
(the OpenAI error shape, which its client reads)."""

from __future__ import annotations

from typing import Any


class HTTPError(Exception):
    """An error answer: status, one-line message, and extra headers (``Retry-After``)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, " ".join(message.split()), kind, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.status}}


class BodyTooLarge(Exception):
    """A request body over the server's limit."""
