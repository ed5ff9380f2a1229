"""What a job may name, and what is refused before anything heavy starts (issue 8).

No network and no servers: ``precheck`` runs in the ``scribe`` command before it starts NATS,
PostgreSQL or the model; ``open_source`` is what the streamer calls for every job.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from core import logs
from streamer.errors import BlockedURL, InputError, NoAudioStream, NotMedia, SourceNotFound, TooLarge
from streamer.source import LOCAL_PATH_REFUSED, open_source, precheck, scheme_of
from tests import media

LIMITS = {"allow_private": False, "max_duration_s": 3 * 3600.0, "max_bytes": 50_000_000}


@pytest.mark.parametrize(
    ("source", "scheme"),
    [
        ("https://example.com/a.mp3", "https"),
        ("HTTP://example.com/a.mp3", "http"),
        ("data:audio/wav;base64,UklGRg==", "data"),
        ("file:/etc/passwd", "file"),
        ("upload:0123abcd", "upload"),
        ("/tmp/clip.mp3", None),
        ("clip:take2.mp3", "clip"),  # a relative name with a colon reads as a scheme: the CLI makes paths absolute
        ("./clip:take2.mp3", None),
        ("C:\\clips\\a.mp3", None),  # a drive letter, not a scheme
    ],
)
def test_a_scheme_string_is_never_a_path(source: str, scheme: str | None) -> None:
    assert scheme_of(source) == scheme


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("data:audio/wav;base64,UklGRiQAAABXQVZF", "data: URIs are not accepted"),
        ("file:/etc/passwd", "file: links are not accepted"),
        ("file:///etc/passwd", "file: links are not accepted"),
        ("ftp://example.com/a.mp3", "not ftp: links"),
        ("javascript:alert(1)", "not javascript: links"),
    ],
)
def test_other_schemes_are_refused_saying_what_to_send(source: str, words: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        precheck(source, **LIMITS)
    assert words in caught.value.reason
    with pytest.raises(BlockedURL):
        open_source(source, local=True, **LIMITS)


def test_a_path_from_the_bus_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    clip = media.make_ogg(tmp_path, seconds=2)
    with pytest.raises(BlockedURL) as caught:
        open_source(str(clip), **LIMITS)  # local defaults to False: a job from the bus
    assert caught.value.reason == LOCAL_PATH_REFUSED
    path, *_ = open_source(str(clip), local=True, **LIMITS)
    assert path == str(clip)


def test_bad_local_input_is_refused_up_front_saying_what_it_is(tmp_path: Path) -> None:
    cases: dict[Path, tuple[type[InputError], str]] = {
        tmp_path / "missing.wav": (SourceNotFound, f"There is no file at {tmp_path / 'missing.wav'}"),
        tmp_path: (SourceNotFound, "is a folder, not a file"),
        media.make_png(tmp_path): (NotMedia, "This is a picture"),
        media.make_video_only(tmp_path): (NoAudioStream, "no sound track"),
        media.make_text_file(tmp_path): (NotMedia, "text file"),
    }
    for path, (error, words) in cases.items():
        with pytest.raises(error) as caught:
            precheck(str(path), **LIMITS)
        assert words in caught.value.reason, path
    big = media.make_ogg(tmp_path, seconds=2)
    with pytest.raises(TooLarge):
        precheck(str(big), **{**LIMITS, "max_bytes": 100})
    precheck(str(big), **LIMITS)  # a sound file passes


def test_a_users_terminal_gets_no_traceback() -> None:
    try:
        raise ValueError("inner detail")
    except ValueError:
        record = logging.LogRecord("streamer", logging.ERROR, __file__, 1, "job failed", None, sys.exc_info())
    plain = logs.TextFormatter("%(levelname)s %(name)s: %(message)s", tracebacks=False)
    assert plain.format(record) == "ERROR streamer: job failed"
    operator = logs.TextFormatter("%(levelname)s %(name)s: %(message)s")
    assert "Traceback" in operator.format(logging.makeLogRecord({**record.__dict__, "exc_text": None}))


def test_a_file_whose_name_looks_like_a_scheme_is_still_a_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    clip = media.make_ogg(tmp_path, seconds=2, name="take:2")
    assert clip.name == "take:2.ogg" and scheme_of("take:2.ogg") == "take"
    precheck("take:2.ogg", **LIMITS)  # the file exists: read as a path, not refused as a take: link
    with pytest.raises(BlockedURL):
        precheck("take:3.ogg", **LIMITS)  # no such file: a link with an unknown scheme
