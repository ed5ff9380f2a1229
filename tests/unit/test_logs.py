"""Logs never carry a job's token, in either format."""

from __future__ import annotations

import io
import logging

from core import logs


def test_tokens_in_logged_urls_and_subprotocols_are_redacted() -> None:
    for fmt in ("json", "text"):
        stream = io.StringIO()
        logs.configure("INFO", fmt, stream)
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/v1/jobs/ab12/stream?token=SECRETsecret_123&after=4"
        )
        logging.getLogger("gateway").info("offered", extra={"protocol": "token.SECRETsecret_123"})
        written = stream.getvalue()
        assert "SECRETsecret_123" not in written, fmt
        assert "token=…&after=4" in written and "token.…" in written, written
    logs.configure("WARNING", "text")


def test_a_token_under_an_encoded_parameter_name_is_redacted_too() -> None:
    """``?to%6Ben=`` is ``?token=`` once decoded, and the gateway accepts it as such."""
    for text in (
        '"GET /v1/jobs/ab12?to%6Ben=SECRETsecret_123 HTTP/1.1" 200',
        "/v1/jobs/ab12/events?after=2&%74oken=SECRETsecret_123",
        "/v1/jobs/ab12?TOKEN=SECRETsecret_123",
        "Authorization: Bearer SECRETsecret_123",
    ):
        redacted = logs.redact(text)
        assert "SECRETsecret_123" not in redacted, redacted
    assert logs.redact("/v1/jobs?limit=20&cursor=abc") == "/v1/jobs?limit=20&cursor=abc"
