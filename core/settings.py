"""Settings, read once from ``SCRIBE_*`` environment variables into a frozen object.

Nothing reads the environment at import time: ``Settings.from_env()`` is called by each
entry point and the result is passed down. Every value is checked when the object is made,
so a bad one stops the process at start with the variable's name and what it may be
(``SettingsError``; the entry points exit with status 2), not deep in a worker.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

AsrBackend = Literal["local", "openai"]
ChunkCodec = Literal["auto", "flac", "opus"]
LogFormat = Literal["auto", "json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
AuthMode = Literal["none", "keys"]
RateUnit = Literal["second", "minute", "hour", "day"]

# USD per minute of audio sent (OpenAI's price list); override with SCRIBE_PRICES.
DEFAULT_PRICES: dict[str, float] = {
    "whisper-1": 0.006,
    "gpt-4o-transcribe": 0.006,
    "gpt-4o-mini-transcribe": 0.003,
}

# Seconds (shortest, longest) of a chunk for each backend, when SCRIBE_CHUNK_MIN_S/MAX_S are not set.
CHUNK_LENGTHS: dict[str, tuple[float, float]] = {"local": (40.0, 60.0), "openai": (10.0, 20.0)}

DEFAULT_PROMPT = "以下係香港嘅港式廣東話，佢哋喺度講嘢。"


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def _parse_prices(text: str) -> dict[str, float]:
    prices = dict(DEFAULT_PRICES)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"SCRIBE_PRICES item {item!r} is not model=usd_per_minute")
        try:
            prices[name.strip()] = float(value)
        except ValueError as exc:
            raise SettingsError(f"SCRIBE_PRICES price for {name!r} is not a number: {value!r}") from exc
    return prices


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cantonesescribe"


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Infrastructure: empty means "start an embedded one".
    nats_url: str = ""
    database_url: str = ""
    data_dir: Path = field(default_factory=_default_data_dir)

    # Input
    allow_private_urls: bool = False  # tests on loopback only
    max_duration_s: float = 3 * 3600.0
    max_download_bytes: int = 2 * 1024**3
    max_download_s: float = 3600.0  # wall clock for one download: a trickling server cannot hold a streamer
    upload_retention_s: float = 86_400.0  # how long an uploaded file is kept in the uploads bucket
    audio_retention_s: float = 7 * 86_400.0  # how long a job's audio is kept for playback
    # Chunk lengths, 0: the backend's (CHUNK_LENGTHS, read through chunk_lengths), so the streamer must see
    # the transcribers' SCRIBE_ASR_BACKEND. Local, 40-60 s: within a chunk faster-whisper packs speech into
    # full 30 s windows, so longer chunks waste less padding (bench: 10 minutes in 30.5 s of ASR against
    # 51.7 s with 20-30 s chunks, on 2 one-thread workers). An API backend, 10-20 s cut at the pauses Silero
    # VAD finds and only the speech sent (streamer/speech.py): many calls side by side, no pause billed.
    chunk_min_s: float = 0.0
    chunk_max_s: float = 0.0
    chunk_first_max_s: float = 10.0  # a short first chunk: the first line comes back sooner
    silence_dbfs: float = -45.0
    # Silero VAD on each piece: one with no speech (noise, music, hum) is not sent to ASR,
    # so noise is never billed; the local backend applies the same VAD inside each chunk.
    vad: bool = True
    # How chunks are compressed on the bus, and so uploaded to an API (streamer.encode.encode_chunk). auto:
    # FLAC for the local backend (lossless, the cheapest to encode), Opus at 24 kb/s for an API: 4.6x fewer
    # bytes than FLAC for the same CER (bench/compression.py: 0.267 against 0.275 on the 26 clips).
    chunk_codec: ChunkCodec = "auto"

    # ASR
    asr_backend: AsrBackend = "local"
    asr_model: str = "base"  # "base" = the embedded model, or a CTranslate2 model folder
    # Chunks are independent: on 2 cores, two one-thread decodes beat one two-thread
    # decode by about a fifth (README, Benchmarks). 0 means: workers = cores, and
    # threads = cores // workers.
    asr_workers: int = 0  # chunks one local model decodes at once
    asr_threads: int = 0  # CTranslate2 threads per decode
    asr_beam_size: int = 5
    asr_prompt: str = DEFAULT_PROMPT
    asr_suppress_written: bool = False  # measured worse than the prompt alone: README, Benchmarks
    asr_word_times: bool = True  # time each word (local backend): per-character times and confidence
    openai_api_key: str = ""
    openai_base_url: str = ""
    openai_model: str = "whisper-1"
    openai_timeout_s: float = 60.0
    prices: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    # What `scribe costs` and /v1/admin/costs show in pounds: a setting, never a network call.
    gbp_per_usd: float = 0.79
    # Cost guard (transcriber/fallback.py). A chunk heard before is answered from the chunk cache. Once the
    # UTC day's ledger reaches daily_budget_usd (0: no budget), and while the paid API keeps failing, paid
    # chunks go to the fallback: "local" (the embedded model, loaded when first needed), "model:NAME" (a
    # cheaper API model) or "refuse" (the gateway refuses new jobs; jobs in flight finish on the paid API).
    chunk_cache: bool = True
    # The same video (a site's extractor and id) or file (its SHA-256), with the same options, replays the
    # newest finished transcript of it at once, billed 0; a job submitted with "fresh" skips it.
    source_cache: bool = True
    daily_budget_usd: float = 0.0
    fallback: str = "local"

    # Work queue
    max_in_flight: int = 0  # chunks one transcriber holds; 0: local workers, or api_max_in_flight for openai
    # With an API backend, the calls in flight (and chunks waiting to retry) of every transcriber together:
    # the chunks consumer's max_ack_pending, which JetStream enforces across the cluster.
    api_max_in_flight: int = 32
    ack_wait_s: float = 60.0
    max_deliver: int = 5

    # Gateway
    server_url: str = ""  # `scribe transcribe` as a client of this gateway instead of running the pipeline itself
    # none: one user on their own machine, a job's token guards it. keys: every /v1 request needs an
    # API key (`scribe keys create`), each user sees their own jobs within their plan's quotas.
    auth: AuthMode = "none"
    api_key: str = ""  # what `scribe transcribe --server` sends to a gateway that needs a key
    # Loopback by default: any other address (0.0.0.0 in a container) is an explicit choice, and
    # without keys anyone who reaches it may use it (`scribe up` says so).
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    max_upload_bytes: int = 500 * 1000**2  # largest file POST /v1/jobs takes (413 past it)
    stream_queue_size: int = 1000  # events one slow viewer may have unsent before it is closed as lagged
    stream_heartbeat_s: float = 15.0  # a quiet stream sends a heartbeat this often
    # Who may call: the Host names this gateway answers to (DNS rebinding), and the web origins
    # besides its own that may make state-changing requests (CORS). Comma-separated.
    gateway_allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    cors_origins: tuple[str, ...] = ()
    # What one client address may hold, and how long a slow client may take (slowloris).
    gateway_max_connections_per_client: int = 100  # HTTP connections and websockets together
    max_streams: int = 50  # open websockets and event streams per client address, and per API key
    # Requests per key (a plan's own rate replaces it) and per client address without a key, counted
    # across every gateway process in NATS; keys mode only. "off" counts nothing.
    rate_limit: str = "120/minute"
    rate_limit_addresses: bool = True  # off: only keys are counted (benchmarks from one address)
    gateway_header_timeout_s: float = 10.0  # the whole request head
    gateway_body_timeout_s: float = 20.0  # a body's grace period, extended by each byte at the minimum rate
    gateway_body_min_rate: int = 500  # bytes per second a body must average after its grace period
    gateway_send_timeout_s: float = 30.0  # a client that reads nothing of a response this long is dropped
    # Completion webhooks: each POST's timeout and how many attempts (with backoff) before giving up.
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 6

    # Cost alerts (transcriber/alerts.py), once per threshold per UTC day: the day's cost so far, or its
    # projection, more than alert_rise above the previous day's (0: off) or at alert_daily_usd (0: off);
    # no rise alert below alert_min_usd. Sent on scribe.alerts.cost, and POSTed to alert_webhook_url by
    # a gateway, signed when alert_webhook_secret (whsec_ and base64, as Standard Webhooks) is set.
    alert_rise: float = 0.20
    alert_daily_usd: float = 0.0
    alert_min_usd: float = 1.0
    alert_webhook_url: str = ""
    alert_webhook_secret: str = ""

    # Live sessions (WS /v1/live): one ends after live_idle_s without audio, or at live_max_s (with a warning);
    # a transcriber process holds at most live_sessions of them; the gateway waits live_claim_s for one to
    # take a new session before it answers busy. A sender may run live_ahead_s ahead of real time before the
    # gateway stops reading (a file sent at once is paced, never buffered without limit).
    live_idle_s: float = 10.0
    live_max_s: float = 4 * 3600.0
    live_sessions: int = 2
    live_claim_s: float = 3.0
    live_ahead_s: float = 20.0

    log_level: LogLevel = "INFO"
    log_format: LogFormat = "auto"  # auto: JSON lines off a TTY, text on one

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise SettingsError(
                    f"{_variable(name)}={getattr(self, name)!r} is not allowed: choose one of {', '.join(allowed)}"
                )
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise SettingsError(f"{_variable(name)}={getattr(self, name)!r} must be above 0")
        for name in _NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise SettingsError(f"{_variable(name)}={getattr(self, name)!r} must not be negative")
        low, high = self.chunk_lengths
        if low > high:
            default = "" if self.chunk_max_s else f" (the {self.asr_backend} backend's default)"
            raise SettingsError(
                f"{_variable('chunk_min_s')}={low} must not be above {_variable('chunk_max_s')}={high}{default}"
            )
        if self.rate_limit.strip().lower() != "off":
            self.rate()  # checked now: a mistyped rate stops the process at start
        if not 0 <= self.gateway_port <= 65535:
            raise SettingsError(f"{_variable('gateway_port')}={self.gateway_port} is not a port (0-65535)")
        if self.alert_webhook_url and not self.alert_webhook_url.strip().lower().startswith(("http://", "https://")):
            raise SettingsError(f"{_variable('alert_webhook_url')}={self.alert_webhook_url!r} is not an http(s) URL")
        if self.alert_webhook_secret and not _is_webhook_secret(self.alert_webhook_secret):
            raise SettingsError(f"{_variable('alert_webhook_secret')} must be whsec_ followed by base64")
        if self.fallback.strip().lower() not in ("local", "refuse") and not self.fallback_model:
            raise SettingsError(
                f"{_variable('fallback')}={self.fallback!r} is not allowed: choose local, model:NAME "
                "(an API model, priced in SCRIBE_PRICES) or refuse"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``SCRIBE_*`` variable that is set; the rest keep their defaults.

        Raises:
            SettingsError: A value of the wrong type or out of range, naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, type_ in _TYPES.items():
            raw = env.get(_variable(name))
            if raw is None or (raw.strip() == "" and name in _CHOICES):  # `VAR=` means the default
                continue
            values[name] = _convert(name, raw, type_)
        return cls(**values)

    @classmethod
    def for_program(cls, program: str) -> Settings:
        """Settings for an entry point: a bad value ends the process with its message and status 2."""
        try:
            return cls.from_env()
        except SettingsError as exc:
            print(f"{program}: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def rate(self) -> tuple[RateUnit, int] | None:
        """``SCRIBE_RATE_LIMIT`` as Litestar's ``(unit, requests)``, or None when it is ``off``.

        Raises:
            SettingsError: Not ``off`` nor ``N/second|minute|hour|day``.
        """
        text = self.rate_limit.strip().lower()
        if text == "off":
            return None
        count, _, unit = text.partition("/")
        if not count.strip().isdigit() or int(count) < 1 or unit.strip() not in typing.get_args(RateUnit):
            raise SettingsError(
                f"{_variable('rate_limit')}={self.rate_limit!r} is not a rate: write it as 120/minute "
                "(second, minute, hour or day), or off"
            )
        return unit.strip(), int(count)  # type: ignore[return-value]

    @property
    def fallback_kind(self) -> Literal["local", "model", "refuse"]:
        """``SCRIBE_FALLBACK`` without its model name."""
        return "model" if self.fallback_model else "refuse" if self.fallback.strip().lower() == "refuse" else "local"

    @property
    def fallback_model(self) -> str | None:
        """The API model of ``SCRIBE_FALLBACK=model:NAME``; None for ``local`` and ``refuse``."""
        kind, _, model = self.fallback.partition(":")
        return model.strip() if kind.strip().lower() == "model" else None

    def price_per_minute(self, model: str) -> float:
        return float(self.prices.get(model, 0.0))

    @property
    def local_workers(self) -> int:
        return self.asr_workers or os.cpu_count() or 1

    @property
    def local_threads(self) -> int:
        return self.asr_threads or max(1, (os.cpu_count() or 1) // self.local_workers)

    @property
    def in_flight(self) -> int:
        """Chunks one transcriber works on at once: with an API backend, one process may use the whole
        cluster's limit (``api_max_in_flight``), and several share it."""
        if self.max_in_flight:
            return self.max_in_flight
        return self.local_workers if self.asr_backend == "local" else self.api_max_in_flight

    @property
    def bus_codec(self) -> Literal["flac", "opus"]:
        """The codec chunks are sent in: ``SCRIBE_CHUNK_CODEC``, or with ``auto`` the backend's."""
        if self.chunk_codec == "auto":
            return "opus" if self.asr_backend == "openai" else "flac"
        return self.chunk_codec

    @property
    def chunk_lengths(self) -> tuple[float, float]:
        """The shortest and longest chunk in seconds: ``SCRIBE_CHUNK_MIN_S`` and ``_MAX_S`` where set, else the
        backend's (:data:`CHUNK_LENGTHS`)."""
        low, high = CHUNK_LENGTHS[self.asr_backend]
        return self.chunk_min_s or low, self.chunk_max_s or high


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_webhook_secret(secret: str) -> bool:
    """``whsec_`` and a base64 key, as Standard Webhooks secrets are."""
    try:
        return secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) > 0
    except binascii.Error:
        return False


def _variable(name: str) -> str:
    return f"SCRIBE_{name.upper()}"


def _convert(name: str, raw: str, type_: Any) -> Any:
    if typing.get_origin(type_) is Literal:
        allowed = typing.get_args(type_)
        value = raw.strip().upper() if name == "log_level" else raw.strip().lower()
        if value not in allowed:
            raise SettingsError(f"{_variable(name)}={raw!r} is not allowed: choose one of {', '.join(allowed)}")
        return value
    if typing.get_origin(type_) is Mapping:
        return _parse_prices(raw)
    if typing.get_origin(type_) is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    try:
        if type_ is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if type_ is int:
            return int(raw)
        if type_ is float:
            return float(raw)
        if type_ is Path:
            return Path(raw).expanduser()
    except ValueError as exc:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(type_, "valid")
        raise SettingsError(f"{_variable(name)}={raw!r} is not {kind}") from exc
    return raw


_TYPES: dict[str, Any] = typing.get_type_hints(Settings)
_CHOICES: dict[str, tuple[str, ...]] = {
    name: typing.get_args(type_) for name, type_ in _TYPES.items() if typing.get_origin(type_) is Literal
}
_POSITIVE = (
    *("max_duration_s", "max_download_bytes", "max_download_s", "upload_retention_s", "audio_retention_s"),
    *("max_upload_bytes", "stream_queue_size", "stream_heartbeat_s"),
    *("gateway_max_connections_per_client", "max_streams", "gateway_header_timeout_s"),
    *("gateway_body_timeout_s", "gateway_body_min_rate", "gateway_send_timeout_s"),
    *("webhook_timeout_s", "webhook_max_attempts"),
    *("ack_wait_s", "max_deliver", "asr_beam_size", "openai_timeout_s"),
    *("gbp_per_usd", "api_max_in_flight"),
    *("live_idle_s", "live_max_s", "live_sessions", "live_claim_s", "live_ahead_s"),
)
_NOT_NEGATIVE = (
    *("chunk_min_s", "chunk_max_s", "chunk_first_max_s", "asr_workers", "asr_threads", "max_in_flight"),
    *("alert_rise", "alert_daily_usd", "alert_min_usd"),
    "daily_budget_usd",
)
