from services.tracker.consumer import setup
from shared.worker import run

run("tracker", {"tracker": setup})
