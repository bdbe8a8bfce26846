"""Object names by Kubernetes' rules, and API-server paths no string can reshape."""

import urllib.parse

import pytest
import yarl
from hypothesis import given
from hypothesis import strategies as st

from shared.cluster.client import ClusterError, api_path
from shared.cluster.names import name_problem, problems

HOSTILE = [
    "..",
    ".",
    "../../../../../../api/v1/namespaces/victim",
    "a/b",
    "%2e%2e",
    "%2F",
    "a?watch=1",
    "a#b",
    "a b",
    "\uff41\uff50\uff50",  # full-width look-alikes of "app"
    "\u0430pp",  # with a Cyrillic a
    "app\u200b",  # a zero-width space
    "App",
    "-app",
    "app-",
    "a" * 254,
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_for_every_kind(name: str) -> None:
    for kind in ("Job", "Secret", "Deployment", "Service", "Namespace", "CronJob", "Ingress"):
        assert name_problem(kind, name), (kind, name)


@pytest.mark.parametrize(
    ("kind", "name", "allowed"),
    [
        ("Deployment", "web.v2", True),
        ("Deployment", "web-1", True),
        ("Service", "web.v2", False),  # a DNS-1035 label: no dots
        ("Service", "1web", False),  # starts with a letter
        ("Namespace", "web.v2", False),  # a DNS-1123 label
        ("CronJob", "a" * 52, True),
        ("CronJob", "a" * 53, False),
        ("ConfigMap", "a" * 253, True),
        ("Role", "system:viewer", True),  # RBAC names are path segments
        ("Role", "a/b", False),
        ("Role", "..", False),
    ],
)
def test_each_kind_takes_the_api_servers_rule(kind: str, name: str, allowed: bool) -> None:
    assert (name_problem(kind, name) == "") is allowed


def test_problems_name_the_object_and_the_rule() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "../../x", "namespace": "a/b"},
    }
    found = problems(1, job)
    assert found[0].startswith("Job '../../x': metadata.name must be a DNS-1123 subdomain")
    assert found[1].startswith("Job '../../x': metadata.namespace 'a/b' must be a DNS-1123 label")
    generated = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "x-"}}
    assert "metadata.generateName is not allowed" in problems(2, generated)[0]
    odd = {"apiVersion": "../v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert problems(3, odd) == ["document 3 (Pod): apiVersion '../v1' is not a group/version"]
    assert "is not a Kubernetes kind" in problems(4, {"kind": "a/b", "metadata": {}})[0]
    numbered = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 12345}}
    assert problems(5, numbered) == [
        "document 5 (Pod): metadata.name must be a non-empty string, not 12345"
    ]


@pytest.mark.parametrize("text", ["", ".", ".."])
def test_segments_a_url_would_normalise_away_are_refused(text: str) -> None:
    with pytest.raises(ClusterError):
        api_path("api", "v1", "namespaces", "demo", "jobs", text)


@given(st.text(min_size=1).filter(lambda t: t not in (".", "..")))
def test_no_text_changes_the_shape_of_a_path(name: str) -> None:
    """Whatever the name, the URL the client sends has exactly the segments given, and
    the last one reads back as the name."""
    path = api_path("apis", "batch", "v1", "namespaces", "demo", "jobs", name)
    url = yarl.URL("https://api.example:6443" + path)
    assert url.path_qs == url.path  # no query
    assert not url.fragment
    raw = url.raw_path.split("/")
    assert raw[:7] == ["", "apis", "batch", "v1", "namespaces", "demo", "jobs"]
    assert len(raw) == 8
    assert urllib.parse.unquote(raw[7]) == name


@given(st.text())
def test_the_name_check_never_raises(name: str) -> None:
    for kind in ("Deployment", "Service", "Namespace", "CronJob", "Role"):
        assert isinstance(name_problem(kind, name), str)
