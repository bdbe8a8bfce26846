"""Reading what others send: registry pages and challenges, GitLab events, image names."""

from typing import Any

import httpx
import pytest

from services.api.webhook_routes import _change
from shared.messaging.messages import TemplateChanged
from shared.outside.registry import Repository, _challenge, _next


@pytest.mark.parametrize(
    ("image", "host", "name"),
    [
        ("registry.example.com/team/web", "registry.example.com", "team/web"),
        ("127.0.0.1:5000/web", "127.0.0.1:5000", "web"),
        ("localhost/web", "localhost", "web"),
        ("library/nginx", "registry-1.docker.io", "library/nginx"),
        ("nginx", "registry-1.docker.io", "nginx"),
    ],
)
def test_image_repositories_split_as_docker_does(image: str, host: str, name: str) -> None:
    assert Repository.parse(image) == Repository(host, name)


def test_the_next_page_comes_from_the_link_header() -> None:
    relative = httpx.Response(200, headers={"Link": '</v2/a/tags/list?last=9&n=100>; rel="next"'})
    absolute = httpx.Response(
        200, headers={"Link": '<https://r.example/v2/a/tags/list?last=9>; rel="next"'}
    )
    assert _next(relative, "http://r:5000") == "http://r:5000/v2/a/tags/list?last=9&n=100"
    assert _next(absolute, "http://r:5000") == "https://r.example/v2/a/tags/list?last=9"
    assert _next(httpx.Response(200), "http://r:5000") is None


def test_a_bearer_challenge_gives_realm_service_and_scope() -> None:
    scheme, params = _challenge(
        'Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry",
        "scope": "repository:a/b:pull",
    }


def push(commits: list[dict[str, Any]], total: int, after: str = "c" * 40) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "after": after,
        "project": {"id": 7, "path_with_namespace": "platform/templates"},
        "commits": commits,
        "total_commits_count": total,
    }


def test_a_push_names_the_files_its_commits_touched() -> None:
    change = _change(push([{"added": ["a.j2"], "modified": ["b.j2"], "removed": ["c.j2"]}], 1))
    assert isinstance(change, TemplateChanged)
    assert (change.project_id, change.project_path, change.ref) == (
        "7",
        "platform/templates",
        "main",
    )
    assert change.paths == ["a.j2", "b.j2", "c.j2"]


def test_a_push_of_more_commits_than_listed_reads_every_template() -> None:
    change = _change(push([{"modified": ["b.j2"]}] * 20, 25))
    assert isinstance(change, TemplateChanged)
    assert change.paths is None


def test_a_deleted_branch_and_other_events_are_not_changes() -> None:
    assert _change(push([], 0, after="0" * 40)) == "a deleted branch"
    assert _change({"object_kind": "issue"}) == "issue events are not used"
