from services.renderer.consumer import setup
from shared.worker import run

run("renderer", setup)
