"""The live policies with scripted decoders: LocalAgreement-2 (local model) and utterance mode (paid API).

The scripted decoders read the session time from the samples themselves (each sample's value is
its own time in seconds), so they answer for exactly the audio the policy sent them, as a model would.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.messages import RawSegment, RawWord
from transcriber.live import SAMPLE_RATE, SETTLED_S, Interim, LiveStart, LiveUpdate, LocalAgreement
from transcriber.utterances import Utterances

CHAR_S = 0.25
SENTENCES = ["我哋今日去飲茶。", "你想食乜嘢？", "蝦餃燒賣都好好食。", "食完一齊行街啦。"]


def script(sentences: list[str], *, pause_s: float = 0.6) -> list[tuple[int, str, float, float]]:
    """(sentence, character, start, end) on the session timeline; a mark takes no time."""
    out, at = [], 0.5
    for number, sentence in enumerate(sentences):
        for char in sentence:
            length = 0.0 if char in "。？" else CHAR_S
            out.append((number, char, at, at + length))
            at += length
        at += pause_s
    return out


def audio(start: float, end: float) -> np.ndarray:
    """Samples whose values are their own session times."""
    return (np.arange(round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)) / SAMPLE_RATE).astype(np.float32)


class ScriptedModel:
    """Says every character fully heard in the buffer, a segment per sentence; optionally mishears the newest one."""

    def __init__(self, chars: list[tuple[int, str, float, float]], *, mishear: bool = False) -> None:
        self.chars = chars
        self.mishear = mishear
        self.calls: list[tuple[float, float, str | None]] = []

    async def __call__(self, samples: np.ndarray, prompt: str | None) -> list[RawSegment]:
        offset = round(float(samples[0]), 3)
        end = offset + len(samples) / SAMPLE_RATE
        self.calls.append((offset, end, prompt))
        heard = [c for c in self.chars if c[2] >= offset - 1e-3 and c[3] <= end]
        segments = []
        for number in sorted({c[0] for c in heard}):
            words = [
                RawWord(text=char, start=start - offset, end=stop - offset)
                for n, char, start, stop in heard
                if n == number
            ]
            if self.mishear and number == heard[-1][0] and end - heard[-1][3] < CHAR_S:
                last = words[-1]
                words[-1] = RawWord(text="嗯", start=last.start, end=last.end)  # the newest sound, misheard
            segments.append(
                RawSegment(start=words[0].start, end=words[-1].end, text="".join(w.text for w in words), words=words)
            )
        return segments


async def run(policy: LocalAgreement, start: float, end: float) -> list[LiveUpdate]:
    updates = []
    at = start
    while at < end:
        policy.feed(audio(at, min(end, at + 1.0)))
        at = min(end, at + 1.0)
        if policy.ready:
            updates.append(await policy.step())
    return updates


def committed_text(updates: list[LiveUpdate]) -> str:
    return "".join(line.segment.text for update in updates for line in update.lines)


async def test_stable_grows_lines_commit_once_and_in_order() -> None:
    chars = script(SENTENCES)
    policy = LocalAgreement(ScriptedModel(chars, mishear=True))
    updates = await run(policy, 0.0, chars[-1][3] + 1.0)
    updates.append(await policy.finish())

    shown = ""  # committed text + stable text: it may only grow
    committed = ""
    interims: list[Interim] = []
    for update in updates:
        committed += "".join(line.segment.text for line in update.lines)
        if update.interim is not None:
            interims.append(update.interim)
            assert not update.interim.stable.startswith("嗯")
            now = committed + update.interim.stable
            assert now.startswith(shown), (shown, now)
            shown = now
    assert any(i.tentative for i in interims)
    assert any(i.stable for i in interims)
    lines = [line for update in updates for line in update.lines]
    assert [line.index for line in lines] == list(range(len(lines)))
    assert [line.segment.text for line in lines] == SENTENCES  # a line per sentence, nothing twice, nothing lost
    assert all(a.segment.end <= b.segment.start for a, b in zip(lines, lines[1:], strict=False))
    # Every line is committed before the session ends, a few steps after its audio.
    assert all(line.segment.end < chars[-1][3] for line in lines[:-1])
    assert "嗯" not in committed


async def test_buffer_is_cut_after_lines_and_at_the_limit() -> None:
    long_talk = ["一二三四五六七八九十" * 3 + "。"] * 6  # 7.5 s sentences, 45 s in all
    chars = script(long_talk, pause_s=0.3)
    model = ScriptedModel(chars)
    policy = LocalAgreement(model, max_buffer_s=10.0)
    updates = await run(policy, 0.0, chars[-1][3] + 2.0)
    updates.append(await policy.finish())

    assert max(end - offset for offset, end, _ in model.calls) <= 11.0
    assert committed_text(updates) == "".join(long_talk)
    # The committed text's tail is the prompt.
    assert any(prompt and prompt.endswith("十。") for _, _, prompt in model.calls)

    unbroken = ["一二三四五六七八九十" * 10]  # 25 s without a sentence end or a pause
    chars = script(unbroken)
    model = ScriptedModel(chars)
    policy = LocalAgreement(model, max_buffer_s=10.0)
    updates = await run(policy, 0.0, chars[-1][3] + 2.0)
    updates.append(await policy.finish())
    assert max(end - offset for offset, end, _ in model.calls) <= 11.0
    assert committed_text(updates) == unbroken[0]
    assert len([line for update in updates for line in update.lines]) >= 3


async def test_silence_keeps_the_buffer_short() -> None:
    model = ScriptedModel([])
    policy = LocalAgreement(model)
    updates = await run(policy, 0.0, 30.0)
    assert committed_text(updates) == ""
    assert max(end - offset for offset, end, _ in model.calls) <= 3.0


async def test_takeover_resumes_at_the_committed_time() -> None:
    chars = script(SENTENCES)
    first = LocalAgreement(ScriptedModel(chars))
    before = await run(first, 0.0, 7.0)  # then this transcriber dies
    state = first.state
    assert state.next_line >= 1
    assert 0.0 < state.committed_until <= 7.0

    model = ScriptedModel(chars)
    second = LocalAgreement(model, start=LiveStart(**vars(state)))
    after = await run(second, state.committed_until, chars[-1][3] + 1.0)
    after.append(await second.finish())

    lines = [line for update in before + after for line in update.lines]
    assert [line.index for line in lines] == list(range(len(lines)))
    assert "".join(line.segment.text for line in lines) == "".join(SENTENCES)
    assert model.calls[0][2] == state.tail  # the new transcriber prompts with the committed tail


def speech_of(regions: list[tuple[float, float]]):
    """A speech finder for samples that carry their own times."""

    def find(samples: np.ndarray) -> list[tuple[float, float]]:
        if not len(samples):
            return []
        offset, end = float(samples[0]), float(samples[0]) + len(samples) / SAMPLE_RATE
        return [(max(s, offset) - offset, min(e, end) - offset) for s, e in regions if e > offset and s < end]

    return find


async def test_utterance_mode_sends_each_utterance_once() -> None:
    regions = [(1.0, 3.0), (3.2, 5.0), (6.0, 8.5), (10.0, 28.0), (29.0, 30.0)]  # one 18 s stretch of speech
    sent: list[tuple[float, float]] = []

    async def send(samples: np.ndarray, at: float) -> list[RawSegment]:
        start, end = float(samples[0]), float(samples[0]) + len(samples) / SAMPLE_RATE
        assert at == pytest.approx(start, abs=1e-3)  # the session second the utterance starts at
        sent.append((start, end))
        text = f"第{len(sent)}句"
        return [RawSegment(start=0.0, end=end - start, text=text, words=[RawWord(text=text, start=0.1, end=0.5)])]

    policy = Utterances(send, find_speech=speech_of(regions))
    updates = []
    for second in range(32):
        policy.feed(audio(second, second + 1))
        if policy.ready:
            update = await policy.step()
            assert update.interim is None
            updates.append(update)
    updates.append(await policy.finish())

    lines = [line for update in updates for line in update.lines]
    assert [line.index for line in lines] == list(range(len(sent)))
    assert all(b[0] >= a[1] for a, b in zip(sent, sent[1:], strict=False))  # no sample sent twice
    assert all(end - start <= 15.0 + 1e-6 for start, end in sent)
    spoken = sum(e - s for s, e in regions)
    assert sum(end - start for start, end in sent) <= spoken + 2 * 0.1 * len(sent) + 1e-3  # silence is not billed
    assert sent[0][0] >= 0.89 and sent[0][1] < 6.0  # the first pause of 1 s ends the first utterance
    for line, (start, _) in zip(lines, sent, strict=True):
        assert line.segment.start == round(start, 3)
        assert line.segment.words[0].start == round(start + 0.1, 3)

    # Taken over after the first utterance: the rest is sent once more, the first one never again.
    state = LiveStart(committed_until=sent[0][1], next_line=1, tail=lines[0].segment.text)
    resent: list[tuple[float, float]] = []

    async def send_again(samples: np.ndarray, at: float) -> list[RawSegment]:
        resent.append((float(samples[0]), float(samples[0]) + len(samples) / SAMPLE_RATE))
        return [RawSegment(start=0.0, end=1.0, text="again")]

    second = Utterances(send_again, start=state, find_speech=speech_of(regions))
    second.feed(audio(state.committed_until, 32.0))
    update = await second.finish()
    assert resent and resent[0][0] >= sent[0][1]
    assert update.lines[0].index == 1


async def test_speech_without_marks_is_committed_at_its_pauses_within_seconds() -> None:
    # One segment and no punctuation (as the model writes fast speech): only the pauses say where lines end.
    phrases = ["我哋今日去飲茶", "你想食乜嘢", "蝦餃燒賣都好好食", "食完一齊行街"]
    chars, at = [], 0.5
    for phrase in phrases:
        for char in phrase:
            chars.append((0, char, at, at + CHAR_S))
            at += CHAR_S
        at += 0.5  # a pause inside the one segment
    policy = LocalAgreement(ScriptedModel(chars))
    updates = await run(policy, 0.0, at + 1.0)
    lines = [(policy_line, update) for update in updates for policy_line in update.lines]
    texts = [line.segment.text for line, _ in lines]
    assert texts[:2] == phrases[:2], texts  # each at its pause, not kept to a break that never comes
    assert "".join(texts) == "".join(phrases)
    assert all(any(text.endswith(phrase) for phrase in phrases) for text in texts), texts  # never inside a phrase
    # Committed within settled_s plus a step or two of its last character: the run feeds 1 s a step.
    heard = 0.0
    for update in updates:
        heard += 1.0
        for line in update.lines:
            assert heard - line.segment.end <= SETTLED_S + 2.0 + 1e-6, (line.segment.text, heard)
