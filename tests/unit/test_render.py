"""The renderer: safe values, strict variables, errors with the template's line."""

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.models.catalog import BaseParams, CanaryStep
from shared.templating.render import RESTARTED_AT, Limits, ReleaseParams, RenderError, render

DEMO = (Path(__file__).parents[2] / "devstack" / "demo" / "web-service.yaml.j2").read_text()
RELEASE = ReleaseParams(
    release_id="r1",
    service="web",
    version="1.2.3",
    image="registry.local/team/web:1.2.3",
    environment="test",
    namespace="apps",
)


def all_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in all_keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in all_keys(v)}
    return set()


def test_demo_template_renders_a_service_and_a_deployment() -> None:
    params = BaseParams(replicas=3, labels={"team": "core"}, env={"MODE": "fast"})
    rendered = render(DEMO, params, RELEASE)
    service, deployment = rendered.objects
    assert service["kind"] == "Service"
    assert rendered.deployment == "web"
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/team/web:1.2.3"
    assert container["env"] == [{"name": "MODE", "value": "fast"}]
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", "team": "core"}
    assert len(rendered.sha256) == 64


@pytest.mark.parametrize("evil", ["x\n  evil: true", 'x"\nevil: true', "x\n---\nkind: Secret"])
def test_a_parameter_cannot_add_keys_or_documents(evil: str) -> None:
    params = BaseParams(labels={"team": evil}, env={"MODE": evil}, health_path="/" + evil)
    rendered = render(DEMO, params, RELEASE)
    assert len(rendered.objects) == 2
    deployment = rendered.objects[1]
    assert "evil" not in deployment["metadata"]["labels"]
    assert deployment["metadata"]["labels"]["team"] == evil
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "MODE", "value": evil}]
    assert set(container["readinessProbe"]["httpGet"]) == {"path", "port"}
    assert "evil" not in all_keys(rendered.objects)
    assert all(o["kind"] in {"Service", "Deployment"} for o in rendered.objects)


def test_syntax_error_names_the_line() -> None:
    broken = "apiVersion: v1\nkind: ConfigMap\n{% if %}\n"
    with pytest.raises(RenderError, match="line 3"):
        render(broken, BaseParams(), RELEASE)


def test_undefined_variable_names_the_line() -> None:
    broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ no_such_thing }}\n"
    with pytest.raises(RenderError, match=r"line 4.*no_such_thing"):
        render(broken, BaseParams(), RELEASE)


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    sneaky = "a: {{ service.__class__.__mro__ }}\n"
    with pytest.raises(RenderError, match="unsafe"):
        render(sneaky, BaseParams(), RELEASE)


WORKER = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service ~ "-worker" }}
spec:
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec: {containers: [{name: worker, image: {{ image }}}]}
"""
STATEFUL = """apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
"""


def test_a_manifest_holds_any_number_of_workloads_and_says_which() -> None:
    rendered = render("---\n".join([DEMO, WORKER, STATEFUL]), BaseParams(), RELEASE)
    assert rendered.workloads == [
        ("Deployment", "web"),
        ("Deployment", "web-worker"),
        ("StatefulSet", "db"),
    ]
    assert rendered.deployment == ""  # two Deployments, neither marked: no canary target
    only_config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ service }}\n"
    assert render(only_config, BaseParams(), RELEASE).workloads == []


def test_a_canary_needs_the_one_deployment_it_acts_on() -> None:
    canary = BaseParams(canary=[CanaryStep(weight=20)])
    two = "---\n".join([DEMO, WORKER])
    with pytest.raises(RenderError) as refused:
        render(two, canary, RELEASE)
    assert str(refused.value) == (
        "canary: the manifest holds 2 Deployments; mark the canary's with the annotation "
        'fabu.io/canary: "true"'
    )
    marked = WORKER.replace(
        'name: {{ service ~ "-worker" }}',
        'name: {{ service ~ "-worker" }}\n  annotations: {fabu.io/canary: "true"}',
    )
    assert render("---\n".join([DEMO, marked]), canary, RELEASE).deployment == "web-worker"
    assert render(DEMO, canary, RELEASE).deployment == "web"


def test_an_on_delete_workload_is_refused_as_kubectl_refuses_to_follow_it() -> None:
    on_delete = STATEFUL.replace(
        "  serviceName: db", "  serviceName: db\n  updateStrategy: {type: OnDelete}"
    )
    with pytest.raises(RenderError) as refused:
        render("---\n".join([DEMO, on_delete]), BaseParams(), RELEASE)
    assert str(refused.value) == (
        "StatefulSet 'db': rollout status is only available for RollingUpdate strategy type"
    )


def test_a_restart_stamps_only_the_deployments_pod_template() -> None:
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    plain = render(DEMO, BaseParams(), RELEASE)
    restarted = render(DEMO, BaseParams(), RELEASE, restarted_at=at)

    service, deployment = yaml.safe_load_all(restarted.manifest)
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        RESTARTED_AT: at.isoformat()
    }
    assert service == plain.objects[0]
    assert restarted.sha256 != plain.sha256


@pytest.mark.parametrize(
    "sneaky",
    [
        "a: {{ service.__class__.__mro__ }}\n",
        "a: {{ cycler.__init__.__globals__ }}\n",
        "a: {{ lipsum.__globals__ }}\n",
        "a: {{ joiner.__init__.__globals__ }}\n",
        "a: {{ namespace.__init__.__globals__ }}\n",
        "a: {{ self._TemplateReference__context }}\n",
        "a: {{ labels.__class__.__subclasses__() }}\n",
        "a: {{ '{0.__class__}'.format(service) }}\n",
        "a: {{ labels.update({'x': 1}) }}\n",
        "a: {{ env_list.append(1) }}\n",
    ],
)
def test_the_sandbox_reaches_no_internals_and_changes_nothing(sneaky: str) -> None:
    with pytest.raises(RenderError, match=r"unsafe|not safely|is undefined|has no attribute"):
        render(sneaky, BaseParams(labels={"a": "b"}), RELEASE)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("a: {{ 'x' * 100000000 }}\n", "repeated value"),
        ("a: {{ 10 ** 1000000 }}\n", "exponents"),
        (
            "a: {% for i in range(100000) %}{% for j in range(100) %}xxxxx{% endfor %}{% endfor %}\n",
            "longer than",
        ),
    ],
)
def test_a_template_cannot_make_an_unbounded_manifest(template: str, words: str) -> None:
    with pytest.raises(RenderError, match=words):
        render(template, BaseParams(), RELEASE)


def test_yaml_aliases_cannot_expand_a_small_manifest_into_a_huge_one() -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(RenderError, match="more than 200,000 values"):
        render("\n".join(bomb) + "\n", BaseParams(), RELEASE)
    deep = "a: " + "[" * 100 + "]" * 100 + "\n"
    with pytest.raises(RenderError, match="nests deeper"):
        render(deep, BaseParams(), RELEASE)


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: kube-system\n",
            "ConfigMap 'settings' names the namespace 'kube-system': a release holds only "
            "objects of its environment's namespace 'apps'",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ service }}\n",
            "Service 'web' appears twice in the manifest",
        ),
    ],
)
def test_objects_outside_the_namespace_or_twice_are_refused_by_kind_and_name(
    extra: str, refusal: str
) -> None:
    with pytest.raises(RenderError) as refused:
        render(DEMO + "---\n" + extra, BaseParams(), RELEASE)
    assert str(refused.value) == refusal


def test_an_object_naming_its_own_namespace_is_kept() -> None:
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\n"
    rendered = render(DEMO + "---\n" + extra, BaseParams(), RELEASE)
    assert [o["kind"] for o in rendered.objects] == ["Service", "Deployment", "ConfigMap"]


@pytest.mark.parametrize(
    "expression",
    [
        "('%0300000000d' % 1)",
        "('%*d' % (300000000, 1))",
        "('%.300000000f' % 1)",
        "'%0300000000d'|format(1)",
        "'{:>300000000}'.format(1)",
        "'a'|center(300000000)",
        "'a'|indent(300000000, true)",
        "'a b'|wordwrap(300000000)",
    ],
)
def test_formats_cannot_pad_to_sizes_no_manifest_needs(expression: str) -> None:
    with pytest.raises(RenderError, match="width or precision above 10,000"):
        render("x: {{ " + expression + " }}\n", BaseParams(), RELEASE)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("1/0", "division by zero"),
        ("'a' + 1", "can only concatenate str"),
        ("range(1, 2, 0)", "must not be zero"),
        ("'abc'|truncate(-5)", "expected length >= 3"),
        ("nothing", "'nothing' is undefined"),
    ],
)
def test_every_error_a_template_raises_names_its_line(expression: str, words: str) -> None:
    with pytest.raises(RenderError, match=rf"^template error at line 2: .*{re.escape(words)}"):
        render("a: 1\nb: {{ " + expression + " }}\n", BaseParams(), RELEASE)


def test_a_macro_calling_itself_for_ever_and_an_include_are_template_errors() -> None:
    with pytest.raises(RenderError, match="call themselves too deeply"):
        render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", BaseParams(), RELEASE)
    with pytest.raises(RenderError, match="template error at line 1"):
        render("{% include 'other' %}", BaseParams(), RELEASE)


def test_object_names_follow_kubernetes_rules_whatever_the_kind() -> None:
    hook = (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: ../../../../../../api/v1/"
        "namespaces/victim\n  annotations: {fabu.io/hook: pre-rollout}\n"
    )
    with pytest.raises(RenderError) as refused:
        render(DEMO + "---\n" + hook, BaseParams(), RELEASE)
    assert str(refused.value).startswith(
        "Job '../../../../../../api/v1/namespaces/victim': metadata.name must be a DNS-1123 "
        "subdomain"
    )


def test_a_manifest_holds_a_bounded_number_of_objects() -> None:
    many = "{% for i in range(300) %}---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: c{{ i }}}\n{% endfor %}"
    with pytest.raises(RenderError, match="holds 300 objects; at most 250"):
        render(many, BaseParams(), RELEASE)
    assert len(render(many, BaseParams(), RELEASE, limits=Limits(max_objects=300)).objects) == 300


def test_a_secret_cannot_name_an_object() -> None:
    """A name is shown wherever its object is: a secret there would be shown too."""
    template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ 'app-' ~ token }}\n"
    params = BaseParams.model_validate({"token": "qzsec7hidden"})
    with pytest.raises(RenderError) as refused:
        render(template, params, RELEASE, hidden=["qzsec7hidden"])
    assert str(refused.value) == (
        "ConfigMap 'app-••••••': a secret parameter cannot be part of an object's name, "
        "which is shown wherever the object is"
    )
    assert "qzsec7hidden" not in str(refused.value)
    # The same value, not a secret, names it.
    assert render(template, params, RELEASE).objects[0]["metadata"]["name"] == "app-qzsec7hidden"
