"""Choosing the ASR backend the settings name: the local model or the OpenAI API."""

from __future__ import annotations

import httpx

from core.settings import Settings
from transcriber.asr import AsrBackend
from transcriber.local import LocalBackend
from transcriber.openai_api import OpenAIBackend


def create_backend(settings: Settings, *, http_client: httpx.AsyncClient | None = None) -> AsrBackend:
    """Build the backend named by ``settings.asr_backend``.

    Blocking for the local backend (it assembles and loads the model): call it at start-up
    or through ``asyncio.to_thread``.

    Args:
        settings: The service settings.
        http_client: For the OpenAI backend, an HTTP client to reuse (the caller keeps
            ownership and closes it); ignored by the local backend.

    Returns:
        A ready backend.

    Raises:
        BackendConfigError: The OpenAI backend without an API key.
        ModelError: The local model cannot be assembled or loaded.
    """
    if settings.asr_backend == "openai":
        return OpenAIBackend(settings, http_client=http_client)
    return LocalBackend.from_settings(settings)
