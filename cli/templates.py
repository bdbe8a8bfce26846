"""``fabu template``: list templates, add one (kept in Fabu, or read from GitLab or
Git), and read every template from its source again."""

import argparse
from typing import Any

from cli.api import Api, Failed
from cli.terminal import Commands, print_answer, read_document, read_text, table


def _templates(items: list[dict[str, Any]]) -> str:
    def where(t: dict[str, Any]) -> str:
        source = t.get("source")
        if not source:
            return "fabu"
        return f"{source['type']}: {source.get('project') or source.get('url')} {source['path']}"

    rows = [[t["id"], t["name"], str(t["version"]), where(t), t.get("error") or ""] for t in items]
    return table(["ID", "NAME", "VERSION", "SOURCE", "ERROR"], rows)


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu template <action>`` asks; the exit code."""
    match args.action:
        case "list":
            print_answer(args, api.call("GET", "/templates"), _templates)
        case "create":
            body: dict[str, Any] = {"name": args.name}
            if args.file:
                body["content"] = read_text(args.file)
                if args.parameters:
                    body["parameters"] = read_document(args.parameters, "parameters")
            elif args.gitlab_project or args.git_url:
                body["source"] = {
                    "type": "gitlab" if args.gitlab_project else "git",
                    "project": args.gitlab_project or "",
                    "url": args.git_url or "",
                    "path": args.path or "",
                    "ref": args.ref,
                }
            else:
                raise Failed("content: give --file, or --gitlab-project or --git-url with --path")
            print_answer(args, api.call("POST", "/templates", json=body), lambda t: _templates([t]))
        case "sync":
            print_answer(args, api.call("POST", "/templates/sync"), lambda a: a["detail"])
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu template`` and its actions."""
    template = commands.add_parser("template", help="templates").add_subparsers(
        dest="action", required=True
    )
    template.add_parser("list", help="templates")
    made = template.add_parser("create", help="a template kept in Fabu, or read from GitLab/Git")
    made.add_argument("name")
    made.add_argument("--file", "-f", help="the template's content (- for stdin)")
    made.add_argument("--parameters", help="its parameters' JSON Schema (JSON or YAML file)")
    made.add_argument("--gitlab-project", help="read it from this GitLab project")
    made.add_argument("--git-url", help="read it from this Git repository")
    made.add_argument("--path", help="the file in the project or repository")
    made.add_argument("--ref", default="main", help="branch or tag (default: main)")
    template.add_parser("sync", help="read every template from its source again")
