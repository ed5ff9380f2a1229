"""Subject and stream names: the bus half of the integration contract."""

JOBS_SUBMITTED = "scribe.jobs.submitted"
CHUNKS = "scribe.chunks"
SEGMENTS_PREFIX = "scribe.segments"
EVENTS_PREFIX = "scribe.events"

STREAM_JOBS = "SCRIBE_JOBS"
STREAM_CHUNKS = "SCRIBE_CHUNKS"
STREAM_SEGMENTS = "SCRIBE_SEGMENTS"
STREAM_EVENTS = "SCRIBE_EVENTS"

CONSUMER_STREAMER = "streamer"
CONSUMER_TRANSCRIBER = "transcriber"
CONSUMER_ROMANIZER = "romanizer"


def segments(job_id: str) -> str:
    return f"{SEGMENTS_PREFIX}.{job_id}"


def events(job_id: str) -> str:
    return f"{EVENTS_PREFIX}.{job_id}"
