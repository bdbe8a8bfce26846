from services.renderer import consumer, images, templates
from shared.worker import run

run("renderer", {"renderer": consumer.setup, "templates": templates.setup, "images": images.setup})
