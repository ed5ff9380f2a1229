"""`python -m transcriber`: run the transcriber until SIGTERM (needs SCRIBE_NATS_URL and SCRIBE_DATABASE_URL)."""

from core.process import main
from store.db import create_pool
from transcriber.service import Transcriber

if __name__ == "__main__":
    main("transcriber", Transcriber.open, create_pool)
