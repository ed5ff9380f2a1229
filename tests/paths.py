"""Where the shared test data lives: ../shared/data beside the checkout (as in CI)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SCRIBE_SHARED_DATA", REPO.parent / "shared" / "data"))
AUDIO = SHARED_DATA / "audio"
ROMANIZATION = SHARED_DATA / "romanization"
