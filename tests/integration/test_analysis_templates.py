"""Analysis templates on the real stack: kept by config-admins over the version read,
checked on the way in, named by release configs (which keeps them from deletion), and
driven from the ``fabu`` command line."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.integration.test_cli import fabu_cli
from tests.integration.test_templates import configure
from tests.support.releases import prepare
from tests.support.stack import StackEnv
from tests.support.users import user_with

ERROR_RATE = (
    'sum(rate(http_requests_total{namespace="{{namespace}}",{{labels}},code=~"5.."}[1m]))'
    ' / sum(rate(http_requests_total{namespace="{{namespace}}",{{labels}}}[1m]))'
)


def metric(name: str = "error-rate", **fields: Any) -> dict[str, Any]:
    return {"name": name, "query": ERROR_RATE, "success": "result < 0.05", **fields}


def stored(given: dict[str, Any]) -> dict[str, Any]:
    """A metric as stored: the defaults filled in."""
    defaults = {"failure": "", "interval_s": 30, "count": 3}
    return {**defaults, "failure_limit": 0, "inconclusive_limit": 0, **given}


def template(name: str, *metrics: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "description": description, "metrics": list(metrics) or [metric()]}


def named(answer: httpx.Response) -> list[str]:
    """The fields a 422 or 409 names: Fabu's own ``field``, or each problem's place in
    the body as pydantic gives it (``metrics.0.query``)."""
    body = answer.json()
    if isinstance(body["detail"], list):
        return [".".join(str(p) for p in e["loc"][1:]) for e in body["detail"]]
    return [body["field"]]


async def audited(api: httpx.AsyncClient, name: str) -> list[str]:
    page = (await api.get("/audit", params={"target": f"analysis/{name}"})).json()
    return [e["action"] for e in page["items"]]


async def test_a_template_is_created_read_changed_over_the_version_read_and_deleted(
    api: httpx.AsyncClient,
) -> None:
    name = unique("an")
    made = await api.post("/analysis-templates", json=template(name, description="5xx share"))
    assert made.status_code == 201, made.text
    first = made.json()
    assert (first["version"], first["updated_by"]) == (1, "admin")
    assert first["metrics"] == [stored(metric())]
    again = await api.post("/analysis-templates", json=template(name))
    assert again.status_code == 409, again.text
    assert named(again) == ["name"]
    # Who saved it and when are the server's to say.
    forged = await api.post("/analysis-templates", json={**template(unique("an")), "version": 7})
    assert forged.status_code == 422
    assert named(forged) == ["version"]

    listed = (await api.get("/analysis-templates")).json()
    mine = [t for t in listed if t["name"] == name]
    assert [(t["version"], t["used_by"], t["description"]) for t in mine] == [(1, [], "5xx share")]
    assert [t["name"] for t in listed] == sorted(t["name"] for t in listed)

    changed = template(name, metric(count=5), metric("latency", success="result <= 0.3"))
    saved = await api.put(f"/analysis-templates/{name}", json={**changed, "version": 1})
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 2
    assert [m["name"] for m in saved.json()["metrics"]] == ["error-rate", "latency"]
    # Over a version read before that change: refused, and nothing stored.
    stale = await api.put(
        f"/analysis-templates/{name}", json={**template(name, metric(count=9)), "version": 1}
    )
    assert stale.status_code == 409, stale.text
    assert named(stale) == ["version"]
    assert "changed meanwhile" in stale.json()["detail"]
    current = (await api.get(f"/analysis-templates/{name}")).json()
    assert (current["version"], current["metrics"][0]["count"]) == (2, 5)
    # The same again changes nothing (no new version, nothing audited).
    same = await api.put(f"/analysis-templates/{name}", json={**changed, "version": 2})
    assert same.json()["version"] == 2
    elsewhere = await api.put(
        f"/analysis-templates/{name}", json={**template(unique("an")), "version": 2}
    )
    assert elsewhere.status_code == 422
    assert named(elsewhere) == ["name"]

    gone = await api.delete(f"/analysis-templates/{name}")
    assert gone.status_code == 200, gone.text
    assert gone.json()["version"] == 2
    assert (await api.get(f"/analysis-templates/{name}")).status_code == 404
    assert (await api.delete(f"/analysis-templates/{name}")).status_code == 404
    assert await audited(api, name) == ["analysis.delete", "analysis.update", "analysis.create"]


async def test_a_releaser_reads_them_but_may_not_change_them(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    name = unique("an")
    async with user_with(api, fabu, [{"role": "releaser"}]) as (_, releaser):
        refused = await releaser.post("/analysis-templates", json=template(name))
        assert refused.status_code == 403, refused.text
        assert (await api.get(f"/analysis-templates/{name}")).status_code == 404
        assert (await api.post("/analysis-templates", json=template(name))).status_code == 201
        assert (await releaser.get(f"/analysis-templates/{name}")).json()["version"] == 1
        body = {**template(name, metric(count=1)), "version": 1}
        assert (await releaser.put(f"/analysis-templates/{name}", json=body)).status_code == 403
        assert (await releaser.delete(f"/analysis-templates/{name}")).status_code == 403
    assert (await api.get(f"/analysis-templates/{name}")).json()["version"] == 1
    assert await audited(api, name) == ["analysis.create"]


BAD = {
    "an unknown placeholder": (
        [metric(query='up{app="{{app}}"}')],
        "metrics.0.query",
        "unknown placeholder {{app}}",
    ),
    "an unreadable condition": (
        [metric(success="result is low")],
        "metrics.0.success",
        "cannot read 'result is low'",
    ),
    "a failure condition calling a function": (
        [metric(failure="abs(result) > 1")],
        "metrics.0.failure",
        "cannot read",
    ),
    "two metrics of one name": (
        [metric(), metric(success="result < 0.01")],
        "metrics[1].name",
        "each metric needs a name of its own",
    ),
    "a count of 0": ([metric(count=0)], "metrics.0.count", "greater than or equal to 1"),
    "no metrics": ([], "metrics", "at least 1 item"),
}


@pytest.mark.parametrize("case", BAD)
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    api: httpx.AsyncClient, case: str
) -> None:
    metrics, field, said = BAD[case]
    name = unique("an")
    body = {"name": name, "metrics": metrics}
    refused = await api.post("/analysis-templates", json=body)
    assert refused.status_code == 422, refused.text
    assert named(refused) == [field]
    assert said in refused.text
    assert (await api.get(f"/analysis-templates/{name}")).status_code == 404

    # A change refused alike leaves the stored version as it was.
    assert (await api.post("/analysis-templates", json=template(name))).status_code == 201
    refused = await api.put(f"/analysis-templates/{name}", json={**body, "version": 1})
    assert refused.status_code == 422, refused.text
    assert named(refused) == [field]
    kept = (await api.get(f"/analysis-templates/{name}")).json()
    assert (kept["version"], kept["metrics"]) == (1, [stored(metric())])
    assert await audited(api, name) == ["analysis.create"]


async def test_a_config_names_only_templates_that_exist_and_keeps_them_from_deletion(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    template_id = (await api.get(f"/services/{service}/config/{environment}")).json()["template_id"]
    name, missing = unique("an"), unique("missing")
    unknown = await configure(
        api, service, environment, template_id, canary=[{"weight": 20, "analysis": [missing]}]
    )
    assert unknown.status_code == 422, unknown.text
    assert named(unknown) == ["canary[0].analysis"]
    assert missing in unknown.json()["detail"]

    assert (await api.post("/analysis-templates", json=template(name))).status_code == 201
    steps = [{"weight": 20, "analysis": [name]}, {"weight": 50, "analysis": [name, missing]}]
    unknown = await configure(api, service, environment, template_id, canary=steps)
    assert unknown.status_code == 422, unknown.text
    assert named(unknown) == ["canary[1].analysis"]
    assert name not in unknown.json()["detail"]
    blue_green = {"analysis": [missing], "scale_down_delay_s": 5}
    unknown = await configure(api, service, environment, template_id, blue_green=blue_green)
    assert unknown.status_code == 422, unknown.text
    assert named(unknown) == ["blue_green.analysis"]
    # Nothing of those was stored.
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert (config["version"], config["params"]["canary"]) == (1, [])

    saved = await configure(api, service, environment, template_id, canary=steps[:1])
    assert saved.status_code == 200, saved.text
    used_by = f"{service}/{environment}"
    assert (await api.get(f"/analysis-templates/{name}")).json()["used_by"] == [used_by]
    held = await api.delete(f"/analysis-templates/{name}")
    assert held.status_code == 409, held.text
    assert used_by in held.json()["detail"]
    assert (await api.get(f"/analysis-templates/{name}")).status_code == 200

    blue_green = {"analysis": [name], "pause_s": 60}
    saved = await configure(api, service, environment, template_id, blue_green=blue_green)
    assert saved.status_code == 200, saved.text
    assert (await api.delete(f"/analysis-templates/{name}")).status_code == 409
    saved = await configure(api, service, environment, template_id)
    assert saved.status_code == 200, saved.text
    assert (await api.get(f"/analysis-templates/{name}")).json()["used_by"] == []
    assert (await api.delete(f"/analysis-templates/{name}")).status_code == 200


async def test_the_cli_applies_lists_shows_and_deletes_them(
    api: httpx.AsyncClient, fabu: FabuSystem, admin_token: str, tmp_path: Path
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    name = unique("an")
    file = tmp_path / "analysis.yaml"
    file.write_text(yaml.safe_dump(template(name, description="errors")))

    code, out, err = await fabu_cli("analysis", "apply", str(file), env=env)
    assert code == 0, err
    assert out.strip() == f"{name} created: version 1"
    code, out, err = await fabu_cli("analysis", "list", env=env)
    assert code == 0, err
    assert [line.split() for line in out.splitlines() if line.startswith(name)] == [
        [name, "1", "error-rate", "-"]
    ]

    # Applied again as ``show -o json`` printed it, changed: the next version.
    code, out, err = await fabu_cli("-o", "json", "analysis", "show", name, env=env)
    assert code == 0, err
    shown = json.loads(out)
    shown["metrics"].append(metric("latency", success="result <= 0.3", count=2))
    file.write_text(json.dumps(shown))
    code, out, err = await fabu_cli("analysis", "apply", str(file), env=env)
    assert code == 0, err
    assert out.strip() == f"{name} changed: version 2"
    code, out, err = await fabu_cli("analysis", "apply", str(file), env=env)
    assert code == 0, err
    assert out.strip() == f"{name} unchanged: version 2"
    code, out, err = await fabu_cli("analysis", "show", name, env=env)
    assert code == 0, err
    assert out.startswith(f"{name}: version 2 by admin at ")
    assert "used by: -" in out
    assert "metric latency: 2 times, every 30 s, failure limit 0, inconclusive limit 0" in out
    assert "  success: result <= 0.3" in out

    bad = {**template(name), "metrics": [metric(count=0)]}
    file.write_text(yaml.safe_dump(bad))
    code, out, err = await fabu_cli("analysis", "apply", str(file), env=env)
    assert code == 2
    assert "metrics.0.count: " in err
    assert (await api.get(f"/analysis-templates/{name}")).json()["version"] == 2

    code, out, err = await fabu_cli("analysis", "delete", name, env=env)
    assert code == 0, err
    assert out.strip() == f"deleted {name} (version 2)"
    code, out, err = await fabu_cli("analysis", "show", name, env=env)
    assert code == 2
    assert err.strip() == f"fabu: analysis template {name!r} not found (404)"
