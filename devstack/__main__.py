"""``python -m devstack {build,up,down,status}``: the Makefile's stack targets."""

import argparse
import os
import sys

from devstack import build
from devstack.stack import Stack


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    args = parser.parse_args()
    stack = Stack()
    if args.command == "build":
        build.build_all()
    elif args.command == "up":
        delay = int(os.environ.get("FABU_KWOK_READY_DELAY_MS", "1000"))
        stack.up(ready_delay_ms=delay)
        print(stack.env_file.read_text(), end="")
    elif args.command == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        states = stack.running()
        for name, alive in sorted(states.items()):
            print(f"# {name}: {'running' if alive else 'stopped'}", file=sys.stderr)
        if not stack.is_up():
            print("stack is not running (make stack-up)", file=sys.stderr)
            return 1
        print(stack.env_file.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
