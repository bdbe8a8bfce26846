"""Hypothesis on the renderer: whatever text the parameters hold, the manifest keeps the
template's structure, and each value lands exactly where the template put it."""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.models.catalog import BaseParams
from shared.templating.render import ReleaseParams, render
from tests.unit.test_render import DEMO, RELEASE

# Any text YAML can carry: every Unicode character but the surrogates (not text) and
# NUL (which no store keeps; the API refuses it).
TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters=["\x00"]), max_size=40
)
KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./_", min_size=1, max_size=20)


def shape(node: Any) -> Any:
    """The structure without the values: keys, list lengths and value types."""
    if isinstance(node, dict):
        return {k: shape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [shape(v) for v in node]
    return type(node).__name__


PLAIN = render(DEMO, BaseParams(labels={"team": "x"}, env={"MODE": "x"}), RELEASE).objects


# The same inputs every run, so that a failure reproduces (and CI does not depend on luck).
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    team=TEXT,
    mode=TEXT,
    path=TEXT,
    description=TEXT,
    extra=st.dictionaries(KEY, TEXT, max_size=3),
)
def test_no_parameter_value_changes_the_yaml_structure(
    team: str, mode: str, path: str, description: str, extra: dict[str, str]
) -> None:
    params = BaseParams(labels={"team": team}, env={"MODE": mode}, health_path="/" + path)
    release = ReleaseParams(**{**RELEASE.__dict__, "release_id": description or "r"})
    rendered = render(DEMO, params, release)
    assert shape(rendered.objects) == shape(PLAIN)
    service, deployment = rendered.objects
    assert deployment["metadata"]["labels"]["team"] == team
    assert deployment["metadata"]["annotations"]["fabu.dev/release-id"] == (description or "r")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "MODE", "value": mode}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/" + path
    # Extra labels add exactly their own keys, beside the release's ownership, nothing else.
    labelled = render(DEMO, BaseParams(labels={"team": team, **extra}), RELEASE).objects[1]
    owner = {"fabu.io/service": "web", "fabu.io/environment": "test"}
    assert labelled["metadata"]["labels"] == {"app": "web", "team": team, **extra, **owner}
    assert service["kind"] == "Service"
