from services.notifier.consumer import setup
from shared.worker import run

run("notifier", {"notifier": setup})
