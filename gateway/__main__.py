"""`python -m gateway`: serve the HTTP API on SCRIBE_GATEWAY_HOST:SCRIBE_GATEWAY_PORT (0.0.0.0:8000)."""

import uvicorn

from gateway.app import create_app
from scribe import logs
from scribe.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, log_config=None)


if __name__ == "__main__":
    main()
