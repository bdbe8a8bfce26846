"""``fabu environment``: list, add (admins), archive and restore environments."""

import argparse
from typing import Any

from cli.api import Api
from cli.terminal import Commands, given, print_answer, table


def _environments(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            e["name"],
            e["namespace"],
            "in cluster" if e.get("in_cluster") else (e.get("kubeconfig") or "-"),
            "yes" if e.get("approval_required") else "no",
            str(e.get("pod_security", "")) + (" +rbac" if e.get("allow_rbac") else ""),
            str(len(e.get("freeze_windows") or [])),
            "archived" if e.get("archived_at") else "",
        ]
        for e in items
    ]
    return table(["NAME", "NAMESPACE", "CLUSTER", "APPROVAL", "POD SECURITY", "FREEZES", ""], rows)


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu environment <action>`` asks; the exit code."""
    match args.action:
        case "list":
            found = api.call("GET", "/environments", params={"archived": args.archived})
            print_answer(args, found, _environments)
        case "create":
            body = {
                "name": args.name,
                "in_cluster": args.in_cluster,
                "approval_required": args.approval_required,
                "auto_rollback": args.auto_rollback,
                "allow_rbac": args.allow_rbac,
                "create_namespace": args.create_namespace,
                **given(args, "namespace", "kubeconfig", "rollout_timeout_s", "pod_security"),
            }
            made = api.call("POST", "/environments", json=body)
            print_answer(args, made, lambda e: _environments([e]))
        case "archive" | "restore":
            answer = api.call("POST", f"/environments/{args.name}/{args.action}")
            print_answer(args, answer, lambda e: _environments([e]))
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu environment`` and its actions."""
    environment = commands.add_parser("environment", help="environments").add_subparsers(
        dest="action", required=True
    )
    environment.add_parser("list", help="environments").add_argument(
        "--archived", action="store_true", help="the archived ones too"
    )
    env = environment.add_parser("create", help="add an environment (admins)")
    env.add_argument("name")
    env.add_argument("--namespace", required=True)
    env.add_argument("--kubeconfig", help="a file in the operator's FABU_KUBECONFIG_DIR")
    env.add_argument("--in-cluster", action="store_true", help="the cluster Fabu runs in")
    env.add_argument(
        "--create-namespace",
        action="store_true",
        help="create the namespace if the cluster lacks it (else a missing one is refused)",
    )
    env.add_argument("--rollout-timeout-s", type=int)
    env.add_argument("--approval-required", action="store_true")
    env.add_argument("--auto-rollback", action="store_true")
    env.add_argument(
        "--pod-security",
        choices=["privileged", "baseline", "restricted"],
        help="the Pod Security Standards level pods must meet (default baseline)",
    )
    env.add_argument(
        "--allow-rbac",
        action="store_true",
        help="let releases hold Roles and RoleBindings (never a binding to a ClusterRole)",
    )
    environment.add_parser(
        "archive", help="retire an environment: its history stays; nothing is released to it"
    ).add_argument("name")
    environment.add_parser("restore", help="bring an archived environment back").add_argument(
        "name"
    )
