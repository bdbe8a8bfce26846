"""What an approver and a canary's watcher read, on the real stack: the review of a release
awaiting approval (its diff, config changes with a secret masked, who asked), the awaiting
page showing it, and a paused canary page that says what it waits for."""

import html
from typing import Any

import httpx

from devstack.system import FabuSystem, login
from shared.secrets import MASK
from tests.integration.test_canary import paused_at, released
from tests.integration.test_parameters import SECRET, template_with
from tests.integration.test_templates import configure
from tests.support.releases import finished, prepare, push, release
from tests.support.stack import StackEnv
from tests.support.users import acting_as, make_user, token_for

PASSWORD = "a long enough password"


async def page(fabu: FabuSystem, user: str, path: str) -> str:
    """A page of the web UI as ``user`` (logged in with ``PASSWORD``), its text unescaped."""
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        session = await login(http, user, PASSWORD)
        answer = await http.get(path, headers={"Cookie": session["Cookie"]})
    assert answer.status_code == 200, answer.text
    return html.unescape(answer.text)


async def _environment(api: httpx.AsyncClient, name: str, **changes: Any) -> None:
    env = (await api.get(f"/environments/{name}")).json()
    updated = await api.put(f"/environments/{name}", json={**env, **changes})
    assert updated.status_code == 200, updated.text


async def test_an_approver_reviews_the_diff_the_config_changes_and_who_asked(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    template_id = await template_with(api)
    saved = await configure(
        api, service, environment, template_id, owner="payments", db_password=SECRET
    )
    assert saved.status_code == 200, saved.text
    first = await finished(api, await release(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]

    await _environment(api, environment, approval_required=True)
    changed = await configure(
        api,
        service,
        environment,
        template_id,
        owner="payments",
        replicas=3,
        db_password=SECRET + "-new",
    )
    assert changed.status_code == 200, changed.text
    await push(api, service, "1.1.0")
    grants = [{"role": "releaser", "environment": environment}]
    requester = await make_user(api, grants)
    viewer = await make_user(api, [{"role": "viewer"}], password=PASSWORD)
    async with acting_as(fabu, (await token_for(api, requester))["token"]) as as_requester:
        accepted = await as_requester.post(
            "/releases",
            json={
                "service": service,
                "environment": environment,
                "version": "1.1.0",
                "description": "three replicas for the sale",
            },
        )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["state"] == "awaiting_approval"
    release_id = accepted.json()["id"]

    # A viewer may read the review; without a session nobody may.
    async with acting_as(fabu, None) as anonymous:
        assert (await anonymous.get(f"/releases/{release_id}/review")).status_code == 401
    async with acting_as(fabu, (await token_for(api, viewer))["token"]) as as_viewer:
        answer = await as_viewer.get(f"/releases/{release_id}/review")
    assert answer.status_code == 200, answer.text
    assert SECRET not in answer.text
    review = answer.json()
    assert (review["operator"], review["description"]) == (requester, "three replicas for the sale")
    assert (review["kind"], review["version"]) == ("deploy", "1.1.0")
    assert review["running"]["id"] == first["id"]
    assert review["version_change"] == "1.0.0 → 1.1.0"
    changes = {c["path"]: c for c in review["config_changes"]}
    assert (changes["replicas"]["before"], changes["replicas"]["after"]) == ("", "3")
    password = changes["db_password"]
    assert (password["before"], password["after"], password["secret"]) == (MASK, MASK, True)
    assert "owner" not in changes  # unchanged
    assert review["diff_error"] == "", review["diff_error"]
    objects = {f"{o['kind']}/{o['name']}": o for o in review["diff"]["objects"]}
    deployment = objects[f"Deployment/{service}"]
    assert deployment["action"] == "update"
    assert "+  replicas: 3" in deployment["diff"]
    assert any(
        line.startswith("+") and line.endswith(":1.1.0") for line in deployment["diff"].splitlines()
    )
    secret = objects[f"Secret/{service}-db"]
    assert secret["action"] == "update"
    assert MASK in secret["diff"]
    assert "\\u2022" not in secret["diff"]
    assert f"password: {MASK}" in review["manifest"]

    # The awaiting page shows the same above the approve and reject buttons.
    shown = await page(fabu, viewer, f"/releases/{release_id}")
    assert SECRET not in shown
    review_at = shown.index('id="review"')
    assert review_at < shown.index('id="approvers"')
    assert f'id="review-requester">{requester}' in shown
    assert "three replicas for the sale" in shown
    assert 'data-path="replicas"' in shown
    assert 'data-path="db_password"' in shown
    assert "+  replicas: 3" in shown
    assert f"password: {MASK}" in shown
    assert "\\u2022" not in shown

    # The release that runs now offers no rollback to itself.
    releaser = await make_user(api, grants, password=PASSWORD)
    running = await page(fabu, releaser, f"/releases/{first['id']}")
    assert 'id="action-rollback"' not in running
    assert (await api.get(f"/releases/{release_id}/review")).status_code == 200


async def test_a_paused_canary_says_it_waits_for_a_person_and_what_share_it_took(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    canary = [{"weight": 10}, {"weight": 50}]
    service, environment = await prepare(api, stack_env, namespace, replicas=2, canary=canary)
    first = await finished(api, await released(api, service, environment, "1.0"))
    assert first["state"] == "succeeded", first["reason"]
    release_id = await released(api, service, environment, "2.0")
    body = await paused_at(api, release_id, 0)
    lines = [line["text"] for line in body["transcript"]]
    assert any(
        text.startswith("canary step 1 of 2 (10% asked, 1 canary pods) healthy: waiting for")
        for text in lines
    ), lines

    viewer = await make_user(api, [{"role": "viewer"}], password=PASSWORD)
    shown = await page(fabu, viewer, f"/releases/{release_id}")
    assert "waiting for someone to promote or abort" in shown
    assert "data-pause-ends" not in shown
    assert 'data-applied=""' in shown  # no rollout timeout counts down while it waits
    position = shown[shown.index('id="canary-position"') :]
    assert position.startswith('id="canary-position">Now: <strong>canary step 1 of 2</strong>')
    assert "(10 % asked)" in position
    assert "10 % asked → 1 of 3 pods, 33 %" in shown
    assert "Step 1 / 3" not in shown
    # The header's step is the transcript's.
    assert any(text.startswith("canary step 1 of 2") for text in lines)

    # A review is only for a release not yet applied.
    refused = await api.get(f"/releases/{release_id}/review")
    assert refused.status_code == 409
    assert "not yet applied" in refused.json()["detail"]
    aborted = await api.post(f"/releases/{release_id}/abort")
    assert aborted.status_code == 200, aborted.text

    # A release made from another names it by service, version and time, not by id.
    again = await api.post(f"/releases/{first['id']}/redeploy", json={})
    assert again.status_code == 202, again.text
    shown = await page(fabu, viewer, f"/releases/{again.json()['id']}")
    named = shown[shown.index('id="source-release"') :]
    assert named.startswith(f'id="source-release"><a href="/releases/{first["id"]}">{service} ')
    assert "<code>1.0</code> (Deploy, <time" in named
    await paused_at(api, again.json()["id"], 0)
    assert (await api.post(f"/releases/{again.json()['id']}/abort")).status_code == 200
