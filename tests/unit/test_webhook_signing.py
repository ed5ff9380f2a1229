"""Webhook signing, verifying, the URL check and the retry schedule, without I/O.

Signatures follow Standard Webhooks (standardwebhooks.com), checked against the specification's
published test vector: a receiver can verify ours with any of its libraries. The URLs checked
here are IP literals, which the SSRF guard reads without a DNS lookup.
"""

from __future__ import annotations

import base64

import pytest

from gateway import webhooks
from streamer.errors import BlockedURL, UnreachableURL

# The Standard Webhooks specification's test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(signature: str = VECTOR_SIGNATURE, timestamp: int = VECTOR_TIMESTAMP) -> dict[str, str]:
    return {"Webhook-Id": VECTOR_ID, "Webhook-Timestamp": str(timestamp), "Webhook-Signature": signature}


def test_signatures_match_the_standard_webhooks_test_vector() -> None:
    assert webhooks.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert webhooks.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 10)


def test_verify_refuses_another_body_id_secret_or_a_stale_timestamp() -> None:
    now = VECTOR_TIMESTAMP
    assert not webhooks.verify(VECTOR_SECRET, _headers(), b'{"test": 2432232315}', now=now)
    assert not webhooks.verify(VECTOR_SECRET, {**_headers(), "Webhook-Id": "msg_other"}, VECTOR_BODY, now=now)
    other = "whsec_" + base64.b64encode(b"\0" * 32).decode()
    assert not webhooks.verify(other, _headers(), VECTOR_BODY, now=now)
    assert not webhooks.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=now + 301)  # 5 minutes either way
    assert not webhooks.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=now - 301)
    assert not webhooks.verify(VECTOR_SECRET, {"Webhook-Signature": VECTOR_SIGNATURE}, VECTOR_BODY, now=now)
    assert not webhooks.verify(VECTOR_SECRET, {**_headers(), "Webhook-Timestamp": "soon"}, VECTOR_BODY, now=now)
    assert not webhooks.verify(VECTOR_SECRET, _headers(signature="v1,"), VECTOR_BODY, now=now)


def test_verify_accepts_any_of_several_signatures() -> None:
    # Standard Webhooks sends several space-separated signatures while a secret is being rotated.
    several = f"v1,bm90IHRoaXMgb25l {VECTOR_SIGNATURE}"
    assert webhooks.verify(VECTOR_SECRET, _headers(signature=several), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_signed_headers_carry_what_verify_needs() -> None:
    secret = webhooks.webhook_secret(b"d" * 32, "job-1")
    headers = webhooks.signed_headers(secret, "job-1.final", b'{"type":"final"}', timestamp=1_700_000_000)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "CantoneseScribe-webhook/1"
    assert webhooks.verify(secret, headers, b'{"type":"final"}', now=1_700_000_000)


def test_each_job_has_its_own_secret_under_each_deployment_secret() -> None:
    first = webhooks.webhook_secret(b"a" * 32, "job-1")
    assert first == webhooks.webhook_secret(b"a" * 32, "job-1")  # every gateway process derives the same
    assert first != webhooks.webhook_secret(b"a" * 32, "job-2")
    assert first != webhooks.webhook_secret(b"b" * 32, "job-1")
    assert first.startswith("whsec_") and len(base64.b64decode(first.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://10.0.0.8/hook", r"private or local network address \(10\.0\.0\.8\)"),
        ("http://[::1]:8080/hook", "private or local network address"),
        ("http://100.64.0.1/hook", "private or local network address"),  # CGNAT
        ("http://api.localhost/hook", r"private or local network address \(api\.localhost\)"),  # no lookup
        ("ftp://93.184.215.14/hook", "http:// or https://"),
        ("hook.example.com/path", "http:// or https://"),
        ("https://user:pw@93.184.215.14/hook", "user name, a password"),
        ("https://93.184.215.14/" + "a" * 2000, "longer than 2,000 characters"),
    ],
)
def test_check_refuses_what_would_not_be_called(url: str, says: str) -> None:
    with pytest.raises(BlockedURL, match=says) as refused:
        webhooks.check(url, allow_private=False)
    assert refused.value.reason.startswith("The webhook_url")


def test_check_lets_public_addresses_through_and_private_ones_when_allowed() -> None:
    webhooks.check("https://93.184.215.14/hooks/scribe?x=1", allow_private=False)
    webhooks.check("http://127.0.0.1:9/hook", allow_private=True)


def test_retry_delays_follow_the_schedule_with_jitter_and_repeat_the_last() -> None:
    schedule = webhooks.RETRY_DELAYS_S
    assert schedule == (5.0, 30.0, 120.0, 600.0, 1800.0)
    for attempts, base in [(1, 5.0), (2, 30.0), (5, 1800.0), (9, 1800.0)]:
        delays = [webhooks.retry_delay(schedule, attempts) for _ in range(200)]
        assert all(0.8 * base <= delay <= 1.2 * base for delay in delays)
        assert len(set(delays)) > 1  # jittered


async def test_a_failed_lookup_at_delivery_is_retried_a_private_answer_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup_fails(url: str, *, allow_private: bool) -> None:
        raise UnreachableURL("This service could not look up the site name hooks.example.com.")

    def now_private(url: str, *, allow_private: bool) -> None:
        raise BlockedURL("The webhook_url points to a private or local network address (hooks.example.com).")

    for vetted, final in [(lookup_fails, False), (now_private, True)]:
        monkeypatch.setattr(webhooks, "_vetted", vetted)
        answer = await webhooks.post("https://hooks.example.com/", b"{}", {}, allow_private=False, timeout_s=5)
        assert (answer.ok, answer.final, answer.status) == (False, final, None)
        assert answer.error and "hooks.example.com" in answer.error
