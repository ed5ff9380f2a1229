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
