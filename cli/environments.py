"""``fabu environment``: list, add and change (admins), archive and restore environments."""

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
            e.get("requires_success_in") or "-",
            "archived" if e.get("archived_at") else "",
        ]
        for e in items
    ]
    headers = ["NAME", "NAMESPACE", "CLUSTER", "APPROVAL", "POD SECURITY", "FREEZES"]
    return table([*headers, "REQUIRES SUCCESS IN", ""], rows)


# Settings ``update`` may change, by their API names: given ones replace the stored values.
UPDATED = (
    "namespace",
    "kubeconfig",
    "in_cluster",
    "rollout_timeout_s",
    "approval_required",
    "auto_rollback",
    "pod_security",
    "allow_rbac",
)
# ``--requires-success-in`` with one of these: no earlier environment is required.
NONE = ("", "-")


def updated(current: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The environment ``current`` with the settings given on the command line."""
    body = {**current, **{n: getattr(args, n) for n in UPDATED if getattr(args, n) is not None}}
    if args.requires_success_in is not None:
        wanted = args.requires_success_in
        body["requires_success_in"] = None if wanted in NONE else wanted
    if args.kubeconfig:
        body["in_cluster"] = False
    elif args.in_cluster:
        body["kubeconfig"] = None
    if args.create_namespace:
        body["create_namespace"] = True
    return body


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
                **given(
                    args,
                    "namespace",
                    "kubeconfig",
                    "rollout_timeout_s",
                    "pod_security",
                    "requires_success_in",
                ),
            }
            made = api.call("POST", "/environments", json=body)
            print_answer(args, made, lambda e: _environments([e]))
        case "update":
            current = api.call("GET", f"/environments/{args.name}")
            body = updated(current, args)
            saved = api.call("PUT", f"/environments/{args.name}", json=body)
            print_answer(args, saved, lambda e: _environments([e]))
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
    env.add_argument(
        "--requires-success-in",
        metavar="ENV",
        help="release here only versions that succeeded in ENV (an earlier environment)",
    )
    change = environment.add_parser(
        "update", help="change an environment's settings (admins): those given, the rest kept"
    )
    change.add_argument("name")
    change.add_argument("--namespace")
    change.add_argument("--kubeconfig", help="a file in the operator's FABU_KUBECONFIG_DIR")
    change.add_argument(
        "--in-cluster", action=argparse.BooleanOptionalAction, help="the cluster Fabu runs in"
    )
    change.add_argument(
        "--create-namespace",
        action="store_true",
        help="create the namespace if the cluster lacks it (else a missing one is refused)",
    )
    change.add_argument("--rollout-timeout-s", type=int)
    for flag in ("--approval-required", "--auto-rollback", "--allow-rbac"):
        change.add_argument(flag, action=argparse.BooleanOptionalAction)
    change.add_argument("--pod-security", choices=["privileged", "baseline", "restricted"])
    change.add_argument(
        "--requires-success-in",
        metavar="ENV",
        help="release here only versions that succeeded in ENV; '-' for none",
    )
    environment.add_parser(
        "archive", help="retire an environment: its history stays; nothing is released to it"
    ).add_argument("name")
    environment.add_parser("restore", help="bring an archived environment back").add_argument(
        "name"
    )
