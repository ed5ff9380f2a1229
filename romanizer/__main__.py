"""`python -m romanizer`: run the romanizer service until SIGTERM (needs SCRIBE_NATS_URL and SCRIBE_DATABASE_URL)."""

from core.process import main
from romanizer.service import RomanizerService
from store.db import create_pool

if __name__ == "__main__":
    main("romanizer", RomanizerService.open, create_pool)
