"""The terminal: what `scribe transcribe` draws from a job's events, and its commands."""

from __future__ import annotations

import io

import msgspec
import pytest

from core.messages import Char, Final, Partial, Progress, Revised, Segment, Usage, Word
from scribe import cli
from scribe.cli import SERVICE_NAMES, Display, build_parser


def _line(seq: int, start: float, text: str, jyutping: str, yale: str) -> Segment:
    word = Word(text=text, jyutping=jyutping, yale=yale)
    chars = [Char(char=c, jyutping=None, yale=None, yale_numeric=None) for c in text]
    return Segment(
        seq=seq, start=start, end=start + 1, text=text, jyutping=jyutping, yale=yale, words=[word], chars=chars
    )


def test_lines_are_drawn_as_they_come_with_the_romanization_asked_for() -> None:
    out = io.StringIO()  # not a terminal: lines only, no progress bar
    display = Display(out, romanization="yale")
    display.show(Progress(job_id="j", chunks_published=1, seconds_decoded=10.0, duration=3700.0))
    display.show(
        Partial(job_id="j", chunk_seq=0, chunks_done=1, segments=[_line(0, 3661.0, "你好", "nei5 hou2", "néih hóu")])
    )
    display.show(
        Final(
            job_id="j",
            duration=3700.0,
            segment_count=1,
            usage=Usage(backend="local", model="m", billed_seconds=1, cost_usd=0),
        )
    )
    assert out.getvalue() == "[1:01:01] 你好\n        néih hóu\n"


def test_a_correction_is_drawn_as_such_with_yale_in_tone_numbers() -> None:
    out = io.StringIO()
    display = Display(out, romanization="yale_numeric")
    line = _line(3, 0.0, "今日", "gam1 jat6", "gām yaht")
    display.show(Revised(job_id="j", segment=msgspec.structs.replace(line, original_text="金日", revision=1)))
    assert out.getvalue() == "line 3 corrected: 今日\n        gam1 yat6\n"


@pytest.mark.parametrize(
    ("asked", "option"),
    [("jyutping", "jyutping"), ("yale", "yale"), ("yale_numeric", "yale"), ("both", "both"), ("none", "both")],
)
def test_every_reading_the_command_offers_is_a_job_option(asked: str, option: str) -> None:
    assert build_parser().parse_args(["transcribe", "a.mp3", "-r", asked]).romanization == asked
    assert cli.job_romanization(asked) == option


def test_quiet_draws_nothing() -> None:
    out = io.StringIO()
    display = Display(out, quiet=True)
    display.show(
        Partial(job_id="j", chunk_seq=0, chunks_done=1, segments=[_line(0, 0.0, "你好", "nei5 hou2", "néih hóu")])
    )
    assert out.getvalue() == ""


def test_every_service_has_its_command() -> None:
    from scribe.runtime import SERVICES

    assert set(SERVICE_NAMES) == set(SERVICES)
    parser = build_parser()
    for name in (*SERVICES, "all"):
        assert parser.parse_args([name]).command == name


def test_an_unexpected_error_is_one_line_without_a_traceback(monkeypatch, capsys) -> None:
    async def broken(args: object, settings: object) -> int:
        raise RuntimeError("the embedded server did not start")

    monkeypatch.setattr(cli, "refuse_early", lambda args, settings: None)
    monkeypatch.setattr(cli, "transcribe", broken)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["transcribe", "clip.wav", "-q"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err == "scribe: RuntimeError: the embedded server did not start (run again with --verbose for details)\n"
