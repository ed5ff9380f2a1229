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
