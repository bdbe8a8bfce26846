import uvicorn

from services.api.app import create_app
from shared.logs import configure_logging
from shared.settings import Settings

settings = Settings()
configure_logging()
uvicorn.run(
    create_app(settings),
    host=settings.http_host,
    port=settings.http_port or 8000,
    log_level="warning",
    timeout_graceful_shutdown=20,
)
