from services.deployer.consumer import setup, setup_promotions
from services.deployer.recovery import setup_recoveries
from shared.worker import run

run("deployer", {"deployer": setup, "promotions": setup_promotions, "recoveries": setup_recoveries})
