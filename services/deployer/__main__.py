from services.deployer.consumer import setup, setup_promotions
from shared.worker import run

run("deployer", {"deployer": setup, "promotions": setup_promotions})
