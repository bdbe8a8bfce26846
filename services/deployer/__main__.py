from services.deployer.consumer import setup
from shared.worker import run

run("deployer", {"deployer": setup})
