from services.renderer import consumer, template_sync
from shared.worker import run

run("renderer", {"renderer": consumer.setup, "templates": template_sync.setup})
