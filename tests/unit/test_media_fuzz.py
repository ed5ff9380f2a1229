"""Fuzzing the media reader with broken, hostile and odd inputs (issue 8).

Every case of ``bench.fuzz_cases`` is built from 3 seconds of real speech and decoded once, in a
worker thread with a timeout, through ``open_media`` and ``MediaReader.pieces``; the tests below
read that one outcome. For every case: no crash (only an ``InputError`` escapes, with a sentence
for the user), no hang, valid pieces, and no more samples than the duration limit allows. For the
cases that say so: refused, clean, some sound audio out, or salvaged with a warning.

The same cases on long inputs, with time and memory: ``python -m bench.fuzz_media``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bench.fuzz_cases import Case, Corpus, Outcome, decode, max_samples

CLIP_S = 3.0
MAX_DURATION_S = 60.0
# Each case decodes in well under a second; a case still running after this has hung.
HANG_TIMEOUT_S = 30.0
# Words a user-facing sentence must not contain: they come from exceptions, not from us.
JARGON = ("Traceback", "Error:", "FFmpeg", "Errno")

CASES = Corpus(speech_s=CLIP_S, noise_s=CLIP_S).cases()


def _cases(*expects: str) -> list[Case]:
    return [case for case in CASES if case.expect in expects]


def _decode_with_timeout(path: Path) -> Outcome:
    """Decode in a daemon thread, so that a hang fails its case instead of the whole run."""
    results: list[Outcome] = []
    worker = threading.Thread(
        target=lambda: results.append(decode(path, max_duration_s=MAX_DURATION_S)),
        name=f"fuzz {path.name}",
        daemon=True,
    )
    worker.start()
    worker.join(HANG_TIMEOUT_S)
    if not results:
        return Outcome(kind="hung", message=f"still decoding after {HANG_TIMEOUT_S:.0f} s")
    return results[0]


class _Outcomes:
    """Each case decoded once, on first use, for all the tests that look at it."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._seen: dict[str, Outcome] = {}

    def of(self, case: Case) -> Outcome:
        if case.name not in self._seen:
            path = self._folder / case.name.replace("/", "__").replace("%", "pc")
            path.write_bytes(case.make())
            self._seen[case.name] = _decode_with_timeout(path)
        return self._seen[case.name]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> _Outcomes:
    return _Outcomes(tmp_path_factory.mktemp("fuzz"))


def _unreadable(sentence: str) -> str | None:
    """Why ``sentence`` is not fit to show a user, or None when it is."""
    if not sentence.strip():
        return "it is empty"
    if not sentence.rstrip().endswith("."):
        return "it does not end with a full stop"
    jargon = [word for word in JARGON if word in sentence]
    return f"it contains {jargon}" if jargon else None


def _describe(outcome: Outcome) -> str:
    return (
        f"{outcome.kind} after {outcome.decoded_s:.2f} s of audio ({outcome.error or 'no error'}): "
        f"{outcome.message!r}, warnings {outcome.warnings!r}"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_never_crashes_or_hangs(case: Case, outcomes: _Outcomes) -> None:
    outcome = outcomes.of(case)
    assert outcome.kind != "hung", f"{case.name} hung: {outcome.message}"
    assert not outcome.traceback, f"{case.name} crashed with {outcome.message}\n{outcome.traceback}"
    if outcome.kind == "refused":
        why = _unreadable(outcome.message)
        assert why is None, f"{case.name}: {outcome.error}.reason {outcome.message!r} is unfit for users: {why}"
    for warning in outcome.warnings or []:
        why = _unreadable(warning)
        assert why is None, f"{case.name}: warning {warning!r} is unfit for users: {why}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_pieces_are_valid_and_bounded(case: Case, outcomes: _Outcomes) -> None:
    outcome = outcomes.of(case)
    assert outcome.kind != "hung", f"{case.name} hung: {outcome.message}"
    assert outcome.samples <= max_samples(MAX_DURATION_S), f"{case.name}: {outcome.decoded_s:.1f} s decoded"
    assert outcome.problems == [], f"{case.name}: invalid pieces"


@pytest.mark.parametrize("case", _cases("refused"), ids=lambda case: case.name)
def test_not_a_recording_is_refused(case: Case, outcomes: _Outcomes) -> None:
    outcome = outcomes.of(case)
    assert outcome.kind == "refused", f"{case.name}: {_describe(outcome)}"
    assert outcome.samples == 0


@pytest.mark.parametrize("case", _cases("clean"), ids=lambda case: case.name)
def test_sound_file_decodes_without_warnings(case: Case, outcomes: _Outcomes) -> None:
    outcome = outcomes.of(case)
    assert outcome.kind == "clean", f"{case.name}: {_describe(outcome)}"
    assert outcome.decoded_s == pytest.approx(CLIP_S, abs=0.2)


@pytest.mark.parametrize("case", _cases("sound", "salvage"), ids=lambda case: case.name)
def test_sound_part_comes_out(case: Case, outcomes: _Outcomes) -> None:
    """Damaged, cut or format-changing input: the sound part is decoded and ``pieces`` ends normally."""
    outcome = outcomes.of(case)
    assert outcome.kind in ("clean", "salvaged"), f"{case.name}: {_describe(outcome)}"
    assert outcome.samples > 0, f"{case.name}: {_describe(outcome)}"


@pytest.mark.parametrize("case", _cases("salvage"), ids=lambda case: case.name)
def test_salvage_warning(case: Case, outcomes: _Outcomes) -> None:
    """SALVAGE WARNING (issue 8's spec): audio was lost, so the reader says so in ``warnings``.

    The cases: a file cut at 10, 50 or 90 % (WAV) or at 50 % (the other formats with their index
    first; see ``bench.fuzz_cases``), and a WAV header claiming 5 hours over 1 s of audio. Each is
    transcribed as far as it goes, with a warning.
    """
    outcome = outcomes.of(case)
    assert outcome.warnings is not None, f"{case.name}: the reader has no 'warnings' attribute"
    assert outcome.warnings, f"{case.name}: no warning that audio was lost; {_describe(outcome)}"


@pytest.mark.parametrize("case", [c for c in CASES if c.name.startswith("change/")], ids=lambda case: case.name)
def test_decoding_goes_on_through_a_format_change(case: Case, outcomes: _Outcomes) -> None:
    """Two files joined (16 kHz mono, then 44.1 kHz stereo): both halves come out, not only the first."""
    outcome = outcomes.of(case)
    assert outcome.decoded_s == pytest.approx(CLIP_S, abs=0.3), f"{case.name}: {_describe(outcome)}"
