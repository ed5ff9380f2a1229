"""Errors the streamer raises for bad input, each with a sentence the user can act on.

Every error is permanent for its job: retrying the same input gives the same result, so
the service fails the job with ``exc.reason`` and moves on (no nak, no redelivery).

Hierarchy::

    InputError                  root; .reason is shown to the user
    ├── SourceNotFound          local path missing or not a regular file
    ├── NotMedia                not audio or video (text, HTML, unknown bytes)
    ├── NoAudioStream           media without an audio track (e.g. a silent video)
    ├── CorruptMedia            recognised media that fails to decode, or ends early
    ├── TooLong                 longer than the duration limit
    │   └── OverPlanLimit       longer than the submitter's plan allows (``PlanLimit``)
    ├── TooLarge                download bigger than the byte limit
    ├── BlockedURL              URL the server must not fetch (SSRF guard, bad scheme)
    ├── UnreachableURL          DNS failure, refused connection, HTTP error, timeout
    ├── UnsupportedInput        playlists, live streams other than HLS, HLS/DASH/concat manifests
    └── LiveInputError          live audio (``WS /v1/live``): a bad format, frame or encoding

Silence-only input is not an error here: the service sees that every piece is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

# A recording whose metadata says it is up to this much over a plan's limit is let through whole:
# metadata and decoders disagree slightly, and "10 min 00 s long; the free plan allows up to
# 10 min 00 s" would make no sense.
PLAN_SLACK_S = 1.0


def human_duration(seconds: float) -> str:
    """``"45 seconds"``, ``"4 min 38 s"``, ``"2 h 05 min"``."""
    seconds = max(0, round(seconds))
    if seconds == 1:
        return "1 second"
    if seconds < 120:
        return f"{seconds} seconds"
    minutes, secs = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_bytes(size: int) -> str:
    """``"500 kB"``, ``"200 MB"``, ``"2.1 GB"`` (decimal units)."""
    if size < 1_000_000:
        return f"{size / 1000:.0f} kB"
    if size < 1_000_000_000:
        return f"{size / 1e6:.0f} MB"
    return f"{size / 1e9:.1f} GB"


class InputError(Exception):
    """Root of every bad-input error.

    Attributes:
        reason: A user-facing sentence saying what happened and what to do.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceNotFound(InputError):
    """A local path that does not exist or is not a regular file."""


class NotMedia(InputError):
    """Input that is not audio or video at all (text file, web page, unknown bytes)."""


class NoAudioStream(InputError):
    """Media that has no audio track, such as a video without sound."""


class CorruptMedia(InputError):
    """Recognised media that is broken: truncated, damaged, or undecodable.

    Attributes:
        decoded_s: Seconds of good audio decoded (and already yielded as pieces) before the
            damage was found; 0.0 when nothing could be decoded.
    """

    def __init__(self, reason: str, *, decoded_s: float = 0.0) -> None:
        super().__init__(reason)
        self.decoded_s = decoded_s


class TooLong(InputError):
    """Input longer than the duration limit.

    Attributes:
        duration_s: The known duration, or the decoded time when the limit was crossed.
        max_duration_s: The limit.
    """

    def __init__(self, reason: str, *, duration_s: float, max_duration_s: float) -> None:
        super().__init__(reason)
        self.duration_s = duration_s
        self.max_duration_s = max_duration_s

    @classmethod
    def over_limit(cls, duration_s: float, max_duration_s: float, *, while_decoding: bool = False) -> TooLong:
        """The standard error for ``duration_s`` over ``max_duration_s``."""
        said = (
            f"The recording is longer than the {human_duration(max_duration_s)} limit"
            if while_decoding
            else f"The recording is {human_duration(duration_s)} long; the limit is {human_duration(max_duration_s)}"
        )
        return cls(
            f"{said}. Cut it into shorter parts and send them one by one.",
            duration_s=duration_s,
            max_duration_s=max_duration_s,
        )


class OverPlanLimit(TooLong):
    """Input whose known duration is over its submitter's plan's limit (under the deployment's).

    Attributes:
        plan: The plan's name, or None when the job did not say.
    """

    def __init__(self, reason: str, *, duration_s: float, max_duration_s: float, plan: str | None) -> None:
        super().__init__(reason, duration_s=duration_s, max_duration_s=max_duration_s)
        self.plan = plan


@dataclass(frozen=True)
class PlanLimit:
    """The longest recording a job may have under its submitter's plan, with the sentences that say so.

    Attributes:
        max_s: Seconds of audio the job may have.
        plan: The plan's name (``"free"`` reads "the free plan"); None reads "your plan".
    """

    max_s: float
    plan: str | None = None

    def allows(self) -> str:
        """``"the free plan allows up to 10 min 00 s per recording"``."""
        named = f"the {self.plan} plan" if self.plan else "your plan"
        return f"{named} allows up to {human_duration(self.max_s)} per recording"

    def refusal(self, duration_s: float) -> OverPlanLimit:
        """The error for a recording known to last ``duration_s``, over the limit."""
        return OverPlanLimit(
            f"This recording is {human_duration(duration_s)} long; {self.allows()}. "
            "Trim it, or use a plan that allows longer recordings.",
            duration_s=duration_s,
            max_duration_s=self.max_s,
            plan=self.plan,
        )

    def stop_warning(self) -> str:
        """The warning for a recording of unknown length whose decoding stopped at the limit."""
        return f"Stopped at {human_duration(self.max_s)}: {self.allows()}; the rest was not transcribed."


def duration_refusal(duration_s: float | None, *, max_duration_s: float, plan: PlanLimit | None) -> TooLong | None:
    """The refusal for a recording that lasts ``duration_s`` by its metadata, or None when it may be decoded.

    The deployment's limit comes first: no plan would let a recording over it through.

    Args:
        duration_s: Seconds, or None when the metadata does not say (decoding enforces the limits then).
        max_duration_s: The deployment's limit.
        plan: The job's plan limit, when it is under the deployment's.

    Returns:
        ``TooLong`` (the deployment's limit), ``OverPlanLimit`` (the plan's), or None.
    """
    if duration_s is None:
        return None
    if duration_s > max_duration_s:
        return TooLong.over_limit(duration_s, max_duration_s)
    if plan is not None and duration_s > plan.max_s + PLAN_SLACK_S:
        return plan.refusal(duration_s)
    return None


class TooLarge(InputError):
    """A download bigger than the byte limit.

    Attributes:
        max_bytes: The limit.
    """

    def __init__(self, reason: str, *, max_bytes: int) -> None:
        super().__init__(reason)
        self.max_bytes = max_bytes

    @classmethod
    def over_limit(cls, max_bytes: int) -> TooLarge:
        """The standard error for a download over ``max_bytes``."""
        return cls(
            f"The file is larger than the {human_bytes(max_bytes)} limit. Send a shorter or smaller file.",
            max_bytes=max_bytes,
        )


class BlockedURL(InputError):
    """A URL the server refuses to fetch: non-http(s) scheme or a non-public address."""


class UnreachableURL(InputError):
    """A URL that could not be fetched: DNS failure, refused connection, HTTP error, timeout."""


class UnsupportedInput(InputError):
    """Input of a kind the service does not take: playlists, live streams, manifests."""


class LiveInputError(InputError):
    """Live audio that cannot be taken: a format out of range, a frame too large, bytes that are not
    the declared encoding. The session ends (close 4400) and keeps what was decoded before."""
