"""Subject names: the bus half of the integration contract (streams and consumers: ``core.topology``)."""

JOBS_SUBMITTED = "scribe.jobs.submitted"
CHUNKS = "scribe.chunks"
SEGMENTS_PREFIX = "scribe.segments"
EVENTS_PREFIX = "scribe.events"
# Today's cost crossed an alert threshold (transcriber.alerts): once per threshold per UTC day.
ALERTS_COST = "scribe.alerts.cost"


def segments(job_id: str) -> str:
    """The subject of one job's transcribed chunks (transcriber -> romanizer)."""
    return f"{SEGMENTS_PREFIX}.{job_id}"


def events(job_id: str) -> str:
    """The subject of one job's events (romanizer and streamer -> clients)."""
    return f"{EVENTS_PREFIX}.{job_id}"


# Core NATS (no stream keeps it): a job's transcript and audio were purged. Every gateway process
# listens, drops its cached copy of the audio and closes the job's streams.
PURGED_PREFIX = "scribe.purged"


def purged(job_id: str) -> str:
    """The subject announcing that one job was purged."""
    return f"{PURGED_PREFIX}.{job_id}"


# Live sessions (WS /v1/live). A new session for a transcriber (JetStream work queue, LiveStarted):
LIVE_SESSIONS = "scribe.live.sessions"
LIVE_AUDIO_PREFIX = "scribe.live.audio"  # JetStream: a session's audio, 16 kHz mono s16le (gateway -> transcriber)
LIVE_INTERIM_PREFIX = "scribe.live.interim"  # core NATS: LiveInterim (transcriber -> romanizer)
LIVE_UPDATES_PREFIX = "scribe.live.updates"  # core NATS: LiveNotice (transcriber, romanizer -> gateways)


def live_audio(job_id: str) -> str:
    """The subject of one live session's audio."""
    return f"{LIVE_AUDIO_PREFIX}.{job_id}"


def live_interim(job_id: str) -> str:
    """The subject of one live session's interim lines before romanization."""
    return f"{LIVE_INTERIM_PREFIX}.{job_id}"


def live_updates(job_id: str) -> str:
    """The subject of one live session's notices for its viewers: claimed, interim lines, lagging. Never stored."""
    return f"{LIVE_UPDATES_PREFIX}.{job_id}"
