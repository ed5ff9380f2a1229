"""An API backend's chunks: cut at pauses 10-20 s apart with the speech alone sent, and the times that come back
put on the job's timeline. Pure: the speech detector is a threshold on synthetic audio (Silero's place in the
streamer), whose speech is random noise, so which samples were sent can be checked one by one."""

from __future__ import annotations

import numpy as np
import pytest

from core.messages import AudioChunk, RawSegment, RawWord, audio_chunk_decoder, encoder
from streamer.chunker import SAMPLE_RATE
from streamer.cutter import SpeechChunk, SpeechCutter
from transcriber.asr import on_timeline, sent_seconds

SR = SAMPLE_RATE
PAD_S = 0.1


def detect(samples: np.ndarray) -> list[tuple[int, int]]:
    """Speech wherever the audio is not silent (synthetic speech is never near 0)."""
    voiced = np.abs(samples) > 0.01
    edges = np.diff(np.concatenate(([0], voiced.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def timeline(parts: list[tuple[str, float]], seed: int = 1) -> np.ndarray:
    """``("speech" | "pause", seconds)`` parts as samples: random noise of 0.1-0.5 for speech, zeros for pauses."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, seconds in parts:
        n = round(seconds * SR)
        if kind == "speech":
            out.append((rng.uniform(0.1, 0.5, n) * rng.choice([-1.0, 1.0], n)).astype(np.float32))
        else:
            out.append(np.zeros(n, dtype=np.float32))
    return np.concatenate(out)


def talk(seconds: float, seed: int = 7) -> tuple[list[tuple[str, float]], np.ndarray]:
    """Phrases of 1.5-6 s between pauses of 0.15-1.5 s (whole milliseconds), for about ``seconds``."""
    rng = np.random.default_rng(seed)
    parts: list[tuple[str, float]] = [("pause", 0.4)]
    while sum(s for _, s in parts) < seconds:
        parts += [("speech", round(rng.uniform(1.5, 6.0), 3)), ("pause", round(rng.uniform(0.15, 1.5), 3))]
    return parts, timeline(parts, seed)


def cut(samples: np.ndarray, *, block: int = 1234, **rules: float) -> list[SpeechChunk]:
    """Feed ``samples`` in blocks of ``block`` (an awkward size on purpose), then flush."""
    cutter = SpeechCutter(detect, **({"min_s": 10.0, "max_s": 20.0, "pad_s": PAD_S} | rules))
    chunks: list[SpeechChunk] = []
    for start in range(0, len(samples), block):
        chunks += cutter.feed(samples[start : start + block])
    return chunks + cutter.flush()


def sample(seconds: float) -> int:
    """A time as a sample index; the cutter's times fall on whole samples."""
    assert seconds * SR == pytest.approx(round(seconds * SR), abs=1e-6)
    return round(seconds * SR)


def sent_mask(chunks: list[SpeechChunk], n: int) -> np.ndarray:
    """Which of the input's ``n`` samples the chunks send."""
    mask = np.zeros(n, dtype=bool)
    for chunk in chunks:
        for start, end in chunk.speech:
            mask[sample(chunk.offset + start) : sample(chunk.offset + end)] = True
    return mask


def test_an_api_backend_s_chunks_span_10_to_20_s_end_in_pauses_and_send_all_the_speech_and_little_else() -> None:
    parts, samples = talk(240.0)
    chunks = cut(samples)
    speech = np.abs(samples) > 0.01

    assert all(c.duration <= 20.0 for c in chunks)
    assert all(c.duration >= 10.0 for c in chunks[:-1])  # a phrase is at most 6 s: a pause is always in reach
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end <= after.offset  # no overlap: nothing is sent twice
        assert not speech[sample(before.end) - 1 : sample(after.offset) + 1].any()  # cut in a pause
    for chunk in chunks:
        joined = np.concatenate([samples[sample(chunk.offset + a) : sample(chunk.offset + b)] for a, b in chunk.speech])
        np.testing.assert_array_equal(chunk.samples, joined)  # the stretches, joined, and nothing else
        assert 0.0 <= chunk.speech[0][0] and chunk.speech[-1][1] <= chunk.duration + 1e-9
    sent = sent_mask(chunks, len(samples))
    assert not (speech & ~sent).any()  # no word clipped
    pauses = sum(1 for kind, _ in parts if kind == "pause")
    assert speech.sum() < sent.sum() <= speech.sum() + 2 * PAD_S * SR * pauses  # of each pause, PAD_S a side at most
    assert sent.sum() < 0.95 * len(samples)  # the pauses of this talk are a tenth of it: most are not sent


@pytest.mark.parametrize("block", [777, 3 * SR + 5, 10**9], ids=["small-blocks", "3s-blocks", "all-at-once"])
def test_the_chunks_do_not_depend_on_how_the_samples_arrive(block: int) -> None:
    _, samples = talk(120.0, seed=3)
    reference = cut(samples, block=1234)
    chunks = cut(samples, block=block)
    assert [(c.offset, c.duration, c.speech) for c in chunks] == [(c.offset, c.duration, c.speech) for c in reference]
    for chunk, expected in zip(chunks, reference, strict=True):
        np.testing.assert_array_equal(chunk.samples, expected.samples)


def test_the_first_chunk_is_short_when_asked() -> None:
    _, samples = talk(90.0, seed=5)
    chunks = cut(samples, first_max_s=10.0)
    assert 5.0 <= chunks[0].duration <= 10.0
    assert all(c.duration <= 20.0 for c in chunks)


def test_speech_without_a_pause_is_cut_at_the_longest_chunk_and_sent_whole() -> None:
    samples = timeline([("speech", 50.0)])
    chunks = cut(samples)
    assert all(10.0 <= c.duration <= 20.0 for c in chunks[:-1]) and chunks[-1].duration <= 20.0
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.offset == before.end  # no pause to leave out: the chunks tile the speech
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)


def test_long_pauses_are_not_sent() -> None:
    samples = timeline([("pause", 3.0), ("speech", 4.0), ("pause", 8.0), ("speech", 4.0), ("pause", 5.0)])
    (chunk,) = cut(samples)
    # From PAD_S before the speech to PAD_S after it; of the pause between, PAD_S a side.
    assert (chunk.offset, chunk.duration, chunk.speech) == (2.9, 16.2, ((0.0, 4.2), (12.0, 16.2)))
    assert len(chunk.samples) == round(8.4 * SR)  # of 24 s


def test_without_speech_nothing_is_sent() -> None:
    assert cut(timeline([("pause", 45.0)])) == []


def test_pauses_inside_a_chunk_are_shortened_to_twice_the_pad() -> None:
    samples = timeline([("speech", 3.0), ("pause", 2.0), ("speech", 3.0), ("pause", 0.15), ("speech", 3.0)])
    (chunk,) = cut(samples)
    # The 2 s pause keeps 0.1 s a side; the 0.15 s one is shorter than two pads and is kept whole.
    assert chunk.speech == ((0.0, 3.1), (4.9, 11.15))
    assert (chunk.offset, chunk.duration, len(chunk.samples)) == (0.0, 11.15, round(9.35 * SR))


# --- the times that come back, on the job's timeline ----------------------------------------------------------


SPEECH = [(0.0, 3.1), (4.9, 11.15)]  # the chunk above: 3.1 s, then 6.25 s, joined


def test_times_in_the_joined_audio_are_put_back_in_their_stretch_then_moved_by_the_offset() -> None:
    word = RawWord(text="好", start=2.9, end=3.4, probability=0.9)  # across the join: from 2.9 s to 5.2 s
    segment = RawSegment(start=1.0, end=4.0, text="你好嗎", words=[word])
    placed = on_timeline(segment, 100.0, SPEECH)
    assert (placed.start, placed.end) == (101.0, 105.8)
    assert placed.words == [RawWord(text="好", start=102.9, end=105.2, probability=0.9)]
    # On a join, a start belongs to the stretch after it and an end to the one before.
    on_join = on_timeline(RawSegment(start=3.1, end=3.1, text="嗯"), 0.0, SPEECH)
    assert (on_join.start, on_join.end) == (4.9, 4.9)
    ends_on_join = on_timeline(RawSegment(start=2.0, end=3.1, text="嗯"), 0.0, SPEECH)
    assert (ends_on_join.start, ends_on_join.end) == (2.0, 3.1)
    # In the pause kept around a join (0.1 s a side) nothing was said: a start there is the next stretch's,
    # an end the stretch's before.
    in_pause = on_timeline(RawSegment(start=3.05, end=3.15, text="嗯"), 0.0, SPEECH)
    assert (in_pause.start, in_pause.end) == (4.9, 4.9)
    around = on_timeline(
        RawSegment(start=2.0, end=3.15, text="嗯", words=[RawWord(text="嗯", start=3.05, end=5.0)]), 0.0, SPEECH
    )
    assert (around.start, around.end, around.words[0].start, around.words[0].end) == (2.0, 3.1, 4.9, 6.8)
    # Past what was sent (a model's rounding): the end of the last stretch.
    assert on_timeline(RawSegment(start=9.0, end=9.5, text="嗯"), 0.0, SPEECH).end == 11.15


def test_without_stretches_times_are_only_moved_by_the_offset() -> None:
    segment = RawSegment(start=1.25, end=4.5, text="你好", words=[RawWord(text="你", start=1.25, end=1.5)])
    placed = on_timeline(segment, 60.0)
    assert (placed.start, placed.end, placed.words[0].start, placed.words[0].end) == (61.25, 64.5, 61.25, 61.5)
    assert sent_seconds(11.15, SPEECH) == 9.35 and sent_seconds(11.15, []) == 11.15


def test_a_chunk_message_without_stretches_still_decodes() -> None:
    old = b'{"job_id":"j","seq":0,"offset":1.5,"duration":12.0,"codec":"flac","audio":"AAAA"}'
    assert audio_chunk_decoder.decode(old).speech == []
    new = AudioChunk(job_id="j", seq=0, offset=1.5, duration=12.0, codec="flac", audio=b"\0", speech=SPEECH)
    assert audio_chunk_decoder.decode(encoder.encode(new)).speech == SPEECH
