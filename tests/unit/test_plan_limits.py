"""A job's plan limit (issue 17): the message field, and the sentences that tell the user about it."""

from __future__ import annotations

import msgspec

from core.messages import JobOptions, JobSubmitted, encoder, job_submitted_decoder
from core.settings import Settings
from streamer.errors import PLAN_SLACK_S, OverPlanLimit, PlanLimit, TooLong, duration_refusal
from streamer.service import plan_limit


def test_a_job_message_without_a_plan_decodes_as_before() -> None:
    old = b'{"job_id": "j1", "source": "upload:abc", "user_id": "u1", "options": {"romanization": "yale"}}'
    job = job_submitted_decoder.decode(old)
    assert job == JobSubmitted(job_id="j1", source="upload:abc", user_id="u1", options=JobOptions(romanization="yale"))
    assert job.max_seconds is None and job.plan is None


def test_a_job_message_carries_its_plans_limit() -> None:
    job = JobSubmitted(job_id="j1", source="upload:abc", max_seconds=600.0, plan="free")
    assert job_submitted_decoder.decode(encoder.encode(job)) == job
    as_json = msgspec.json.decode(encoder.encode(job))
    assert (as_json["max_seconds"], as_json["plan"]) == (600.0, "free")
    whole_minutes = job_submitted_decoder.decode(b'{"job_id": "j1", "source": "s", "max_seconds": 600}')
    assert whole_minutes.max_seconds == 600.0


def test_the_plan_limit_applies_only_under_the_deployments() -> None:
    settings = Settings(max_duration_s=3600.0)
    assert plan_limit(JobSubmitted(job_id="j", source="s"), settings) is None
    assert plan_limit(JobSubmitted(job_id="j", source="s", max_seconds=3600.0, plan="pro"), settings) is None
    limit = plan_limit(JobSubmitted(job_id="j", source="s", max_seconds=600.0, plan="free"), settings)
    assert limit == PlanLimit(600.0, "free")


def test_the_plans_sentences_name_the_plan_the_lengths_and_what_to_do() -> None:
    refusal = PlanLimit(600.0, "free").refusal(1500.0)
    assert isinstance(refusal, OverPlanLimit) and isinstance(refusal, TooLong)
    assert (refusal.duration_s, refusal.max_duration_s, refusal.plan) == (1500.0, 600.0, "free")
    assert refusal.reason == (
        "This recording is 25 min 00 s long; the free plan allows up to 10 min 00 s per recording. "
        "Trim it, or use a plan that allows longer recordings."
    )
    assert PlanLimit(600.0).stop_warning() == (
        "Stopped at 10 min 00 s: your plan allows up to 10 min 00 s per recording; the rest was not transcribed."
    )


def test_a_known_duration_is_refused_by_the_deployments_limit_first_then_the_plans() -> None:
    free = PlanLimit(600.0, "free")
    assert duration_refusal(None, max_duration_s=3600.0, plan=free) is None  # decoding enforces it
    assert duration_refusal(600.0 + PLAN_SLACK_S, max_duration_s=3600.0, plan=free) is None
    assert isinstance(duration_refusal(602.0, max_duration_s=3600.0, plan=free), OverPlanLimit)
    over_both = duration_refusal(4000.0, max_duration_s=3600.0, plan=free)
    assert type(over_both) is TooLong and "the limit is 60 min 00 s" in over_both.reason
    assert duration_refusal(4000.0, max_duration_s=3600.0, plan=None) is not None
