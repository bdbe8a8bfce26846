"""``make run``: the stack is up; start the Fabu services that exist and say what to open."""

import sys

from devstack.stack import Stack


def main() -> int:
    stack = Stack()
    if not stack.is_up():
        print("the stack is not running: make stack-up", file=sys.stderr)
        return 1
    env = stack.env()
    print(
        "\nFabu's local stack is running (everything real, on 127.0.0.1):\n"
        f"  Kubernetes   {env['FABU_KUBECTL']} --kubeconfig={env['KUBECONFIG']} get nodes\n"
        f"  MongoDB wire {env['FABU_MONGO_URL']}\n"
        f"  NATS         {env['FABU_NATS_URL']}\n"
        f"  Registry     {env['FABU_REGISTRY_URL']}/v2/_catalog\n"
        f"\nUse it from a shell:  set -a; . {stack.env_file}; set +a\n"
        "Stop it with:         make stack-down\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
