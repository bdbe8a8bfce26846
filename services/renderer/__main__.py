from services.renderer import consumer, templates
from shared.worker import run

run("renderer", {"renderer": consumer.setup, "templates": templates.setup})
