"""Romanization accuracy and speed: our romanizer against PyCantonese 5.0, in the same run.

Usage::

    .venv/bin/python bench/romanize_eval.py [--data DIR] [--speed-lines 20000]

For every ``*.tsv`` file of sentences in the shared romanization data it prints
per-character Jyutping accuracy (CJK characters of rows whose syllable count matches)
for :class:`romanizer.romanize.Romanizer` (the front end the pipeline and ``scribe romanize``
share) and for ``pycantonese.characters_to_jyutping``, on all rows and on the
held-out rows. ``polyphone_selection.tsv`` is scored on its target characters only; the
other files are also scored on every occurrence of the selection's 37 polyphonic
characters ("its 37 polyphones"), a larger sample of polyphones in context.

Held-out split: a row is held out when the first 8 hex digits of the SHA-256 of its text,
as an integer, are divisible by 5 (:func:`held_out`, about 20 %). The rules in
``romanizer/rules.py`` were written looking only at the other rows.

Speed: ``scribe romanize`` is run as a subprocess on ``--speed-lines`` sentences (words.hk
then CantoMap, repeated if needed), pinned to one core where possible; the wall time
includes start-up.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SCRIBE_SHARED_DATA", REPO.parent / "shared" / "data")) / "romanization"
CJK = re.compile(r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
SENTENCE_FILES = ("polyphone_selection.tsv", "cantomap_sentences.tsv", "wordshk_examples_jyutping.tsv")

Reader = Callable[[str], Sequence[str | None]]


def held_out(text: str) -> bool:
    """Whether a sentence belongs to the held-out split (never used for tuning).

    Args:
        text: The sentence as in the data file.

    Returns:
        True for about one sentence in five, fixed by the text alone.
    """
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 5 == 0


def load(path: Path) -> list[list[str]]:
    """Rows of a data file, without a header row."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows[1:] if rows and rows[0][0] == "text" else rows


def score(rows: list[list[str]], read: Reader, *, targets: bool, only: frozenset[str] = frozenset()) -> tuple[int, int]:
    """Correct and total characters.

    ``targets`` scores only the target character of a row (the polyphone selection);
    ``only`` scores only these characters.
    """
    correct = total = 0
    for row in rows:
        text, gold = row[0], row[1].split()
        positions = [index for index, char in enumerate(text) if CJK.match(char)]
        if len(positions) != len(gold) or (only and not only.intersection(text)):
            continue
        predicted = read(text)
        for index, syllable in zip(positions, gold, strict=True):
            if (targets and text[index] != row[2]) or (only and text[index] not in only):
                continue
            expected = row[3] if targets else syllable
            total += 1
            correct += predicted[index] == expected
    return correct, total


def pycantonese_reader() -> Reader:
    """Per-character Jyutping from PyCantonese 5.0 ``characters_to_jyutping``."""
    import pycantonese

    def read(text: str) -> list[str | None]:
        out: list[str | None] = []
        for word, jyutping in pycantonese.characters_to_jyutping(text):
            syllables = re.findall(r"[a-z]+[1-6]", jyutping or "")
            out += syllables if len(syllables) == len(word) else [None] * len(word)
        return out

    return read


def tojyutping_reader() -> Reader | None:
    """Per-character Jyutping from ToJyutping 3.2 (BSD-2), when it is installed (``make bench-romanize``)."""
    try:
        import ToJyutping  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return lambda text: [jyutping for _, jyutping in ToJyutping.get_jyutping_list(text)]


def xjyutping_reader() -> Reader | None:
    """Per-character Jyutping from xjyutping 1.3 (MIT, CC BY-SA data), when installed."""
    try:
        from xjyutping import Jyutping  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    reader = Jyutping()
    return lambda text: [jyutping for _, jyutping in reader.annotate(text)]


def canto_hk_g2p_reader() -> Reader | None:
    """Per-character Jyutping from canto-hk-g2p 2.6 (Apache-2.0), when installed.

    It rewrites digits and some punctuation before reading, so its tokens are matched back
    to the input: a token found at the current position gives its characters their
    syllables; input it rewrote gets none.
    """
    try:
        from canto_hk_g2p import Pipeline  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    pipeline = Pipeline()

    def read(text: str) -> list[str | None]:
        out: list[str | None] = [None] * len(text)
        position = 0
        for token, jyutping, *_ in pipeline.convert_detailed(text):
            found = text.find(token, position)
            if found < 0 or (found > position and CJK.match(text[position])):
                continue
            syllables = jyutping.split()
            if len(syllables) == len(token):
                out[found : found + len(token)] = syllables
            position = found + len(token)
        return out

    return read


def g2p_reader() -> Reader:
    """Per-character Jyutping from :class:`romanizer.romanize.Romanizer`."""
    from romanizer.romanize import Romanizer

    romanizer = Romanizer()
    return lambda text: [char.jyutping for char in romanizer.read(text).chars]


def speed(data: Path, lines: int) -> tuple[int, float]:
    """Characters and seconds for ``scribe romanize`` on ``lines`` sentences, start-up included."""
    texts: list[str] = []
    for name in ("wordshk_examples_jyutping.tsv", "cantomap_sentences.tsv"):
        texts += [row[0] for row in load(data / name)]
    texts = (texts * (lines // max(len(texts), 1) + 1))[:lines]
    payload = "\n".join(texts) + "\n"
    command = [sys.executable, "-m", "scribe", "romanize"]
    if sys.platform.startswith("linux"):
        command = ["taskset", "-c", "0", *command]
    started = time.perf_counter()
    result = subprocess.run(command, input=payload.encode("utf-8"), capture_output=True, check=True)
    seconds = time.perf_counter() - started
    assert result.stdout.count(b"\n") == lines, "one JSON line per input line"
    return sum(len(text) for text in texts), seconds


def main() -> None:
    """Print the accuracy table and the speed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--speed-lines", type=int, default=20_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the other tools (faster)")
    args = parser.parse_args()
    readers: dict[str, Reader] = {"g2p": g2p_reader()}
    if not args.no_baseline:
        readers["pycantonese"] = pycantonese_reader()
        optional = {"tojyutping": tojyutping_reader, "canto-hk-g2p": canto_hk_g2p_reader, "xjyutping": xjyutping_reader}
        for name, make in optional.items():
            reader = make()
            if reader is not None:
                readers[name] = reader
    print(f"{'file':34} {'split':9} {'chars':>7} " + " ".join(f"{name:>12}" for name in readers))
    selection = args.data / "polyphone_selection.tsv"
    polyphones = frozenset(row[2] for row in load(selection)) if selection.exists() else frozenset()
    for name in SENTENCE_FILES:
        path = args.data / name
        if not path.exists():
            continue
        rows = load(path)
        scorings: list[tuple[str, bool, frozenset[str]]] = [(name, name.startswith("polyphone"), frozenset())]
        if polyphones and not name.startswith("polyphone"):
            scorings.append((f"  its {len(polyphones)} polyphones", False, polyphones))
        for label, targets, only in scorings:
            for split, subset in (("all", rows), ("held-out", [row for row in rows if held_out(row[0])])):
                results = {key: score(subset, read, targets=targets, only=only) for key, read in readers.items()}
                total = next(iter(results.values()))[1]
                cells = " ".join(f"{correct / max(count, 1):12.4f}" for correct, count in results.values())
                print(f"{label:34} {split:9} {total:7d} {cells}", flush=True)
    if args.speed_lines:
        chars, seconds = speed(args.data, args.speed_lines)
        print(
            f"scribe romanize: {args.speed_lines} lines, {chars} characters in {seconds:.2f} s "
            f"(start-up included, one core): {chars / seconds:,.0f} characters/s"
        )


if __name__ == "__main__":
    main()
