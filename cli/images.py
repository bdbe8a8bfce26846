"""``fabu image register``: tell Fabu about an image CI pushed."""

import argparse

from cli.api import Api
from cli.terminal import Commands, given, print_answer


def run(api: Api, args: argparse.Namespace) -> int:
    """Register the image ``fabu image register`` names; the exit code."""
    body = given(args, "service", "repository", "tag", "digest", "commit_sha", "pipeline_url")
    image = api.call("POST", "/images", json=body)
    print_answer(args, image, lambda i: f"{i['repository']}@{i['digest']} {','.join(i['tags'])}")
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu image`` and its one action."""
    image = commands.add_parser("image", help="image versions").add_subparsers(
        dest="action", required=True
    )
    register = image.add_parser("register", help="register a pushed image (for CI)")
    register.add_argument("--service", required=True)
    register.add_argument("--repository", help="default: the service's image repository")
    register.add_argument("--tag", required=True)
    register.add_argument("--digest", help="default: the tag's digest in the registry now")
    register.add_argument("--commit-sha", default="")
    register.add_argument("--pipeline-url", default="")
