"""Where the stack keeps its builds (outside the work tree) and its running state."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEVSTACK = Path(__file__).resolve().parent
GOMOD = DEVSTACK / "gomod"


def cache_dir() -> Path:
    """Built binaries and SecantusDB's virtual environment, keyed by component and
    version; survives fresh clones."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fabu"
    return Path(os.environ.get("FABU_CACHE_DIR", default))


def state_dir() -> Path:
    """Data, logs, pids, kubeconfig and env file of the running stack."""
    return Path(os.environ.get("FABU_STACK_DIR", REPO / ".stack"))
