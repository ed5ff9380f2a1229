"""`python -m gateway`: serve the HTTP API on SCRIBE_GATEWAY_HOST:SCRIBE_GATEWAY_PORT (0.0.0.0:8000)."""

import uvicorn

from core import logs
from core.settings import Settings
from gateway.app import create_app


def main() -> None:
    settings = Settings.for_program("python -m gateway")
    logs.configure(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, log_config=None)


if __name__ == "__main__":
    main()
