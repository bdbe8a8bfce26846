from services.notifier.consumer import setup, setup_plans
from shared.worker import run

run("notifier", {"notifier": setup, "plans": setup_plans})
