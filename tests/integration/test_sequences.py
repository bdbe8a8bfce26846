"""Sequences of actions as a state machine, on the real stack.

Hypothesis drives random sequences of release, promote, abort, redeploy,
rollback, cancel, approve and reject, with healthy, crash-looping and
never-ready versions and a version whose pre-rollout hook fails, on a service
with canary steps and a hook (automatic rollback on) and a service whose
environment requires approval. Each action is taken once the services have
settled (every release ended, paused at a step or awaiting approval), so what
the actions endpoint offered is what the action meets. After every step:

- every action the actions endpoint offers is accepted, every other refused;
- what ``/state`` says runs is what the cluster runs;
- a canary service never reaches 100 % of a new version without its steps;
- no canary objects and no running hook pods remain once a release ends;
- every release settles within its timeout plus a margin;
- at most one release is unfinished per service and environment.

``FABU_SEQUENCE_EXAMPLES`` and ``FABU_SEQUENCE_STEPS`` bound it (small in
``make test``; ``make chaos`` runs it longer).
"""

import asyncio
import os
import time
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from kubernetes_asyncio import client, config

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.releases import DEMO, push
from tests.support.stack import StackEnv
from tests.support.users import make_user, token_for

EXAMPLES = int(os.environ.get("FABU_SEQUENCE_EXAMPLES", "3"))
STEPS = int(os.environ.get("FABU_SEQUENCE_STEPS", "12"))
TIMEOUT_S = 6
# A release settles within its timeout (each canary step's, then the full rollout's,
# then an automatic rollback's) plus this.
MARGIN_S = 45
FINAL = {"succeeded", "failed", "cancelled", "rejected", "aborted"}
SETTLED = FINAL | {"paused", "awaiting_approval"}
ACTIONS = ("redeploy", "rollback", "promote", "abort", "cancel", "approve", "reject")
VERSIONS = ("1.0.0", "1.1.0", "2.0.0-crash-loop", "3.0.0-never-ready", "4.0.0-hookfail")
HOOKED = (
    DEMO
    + """
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ service ~ "-migrate" }}
  annotations: {fabu.io/hook: pre-rollout}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {{ {"kwok.fabu.dev/fault": "job-fail"} if version.endswith("-hookfail") else {} }}
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: {{ image }}
"""
)


class Target:
    """A service in an environment, as the machine drives it."""

    def __init__(self, service: str, environment: str, canary: int, auto_rollback: bool) -> None:
        self.service, self.environment = service, environment
        self.canary, self.auto_rollback = canary, auto_rollback

    def __repr__(self) -> str:
        return f"{self.service}/{self.environment}"


async def _target(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    *,
    approval: bool,
    canary: list[dict[str, int]],
    template: str,
) -> Target:
    environment, service = unique("seq"), unique("seq")
    created = await api.post(
        "/environments",
        json={
            "name": environment,
            "namespace": namespace,
            "kubeconfig": str(stack_env.kubeconfig),
            "rollout_timeout_s": TIMEOUT_S,
            "approval_required": approval,
            "auto_rollback": not approval,
        },
    )
    assert created.status_code == 201, created.text
    made = await api.post("/templates", json={"name": unique("seq"), "content": template})
    assert made.status_code == 201, made.text
    registry = stack_env.registry_url.removeprefix("http://")
    created = await api.post(
        "/services",
        json={"name": service, "image_repository": f"{registry}/seq/{service}", "team": "core"},
    )
    assert created.status_code == 201, created.text
    params = {"replicas": 2, "canary": canary}
    saved = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": made.json()["id"], "params": params},
    )
    assert saved.status_code == 200, saved.text
    for version in VERSIONS:
        await push(api, service, version)
    return Target(service, environment, len(canary), auto_rollback=not approval)


class Cluster:
    """Reads of the cluster for the checks, from the machine's own thread."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace

    def read(self, service: str) -> dict[str, Any]:
        return asyncio.run(self._read(service))

    async def _read(self, service: str) -> dict[str, Any]:
        kube = await config.new_client_from_config(config_file=self.kubeconfig)
        async with kube:
            apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
            deployments = {
                d.metadata.name: d
                for d in (await apps.list_namespaced_deployment(self.namespace)).items
            }
            pods = (await core.list_namespaced_pod(self.namespace)).items
        main = deployments.get(service)
        return {
            "image": main.spec.template.spec.containers[0].image if main else None,
            "canary": f"{service}-canary" in deployments,
            "hook_pods": [
                p.metadata.name
                for p in pods
                if p.metadata.name.startswith(f"{service}-migrate")
                and p.status.phase in ("Pending", "Running")
                and p.metadata.deletion_timestamp is None
            ],
        }


class Sequences(RuleBasedStateMachine):
    targets: tuple[Target, ...] = ()
    admin: httpx.Client
    approver: httpx.Client
    cluster: Cluster
    # What each step did, across examples: (action, state it met, answer's status).
    done: ClassVar[list[tuple[str, str, int]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.settled: dict[str, list[dict[str, Any]]] = {}
        for target in self.targets:
            self.settled[repr(target)] = self._settle(target)

    # What the machine reads

    def _releases(self, target: Target) -> list[dict[str, Any]]:
        answer = self.admin.get(
            "/releases",
            params={"service": target.service, "environment": target.environment, "limit": 100},
        )
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def _detail(self, release_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.admin.get(f"/releases/{release_id}").json()
        return body

    def _running(self, target: Target) -> dict[str, Any] | None:
        answer = self.admin.get(
            f"/services/{target.service}/state", params={"environment": target.environment}
        )
        assert answer.status_code == 200, answer.text
        states = answer.json()["environments"]
        return states[0] if states else None

    def _settle(self, target: Target) -> list[dict[str, Any]]:
        """The target's releases once each has ended, paused or awaits a person, and an
        automatic rollback asked for has been started; fails past the deadline."""
        deadline = time.monotonic() + TIMEOUT_S * (target.canary + 2) + MARGIN_S
        while True:
            releases = self._releases(target)
            if all(r["state"] in SETTLED for r in releases) and not self._rolling_back(
                target, releases
            ):
                return releases
            assert time.monotonic() < deadline, f"{target} did not settle: {releases[:3]}"
            time.sleep(0.3)

    def _rolling_back(self, target: Target, releases: list[dict[str, Any]]) -> bool:
        """Whether the newest release failed where Fabu rolls back and its rollback is
        not listed yet."""
        if not releases or releases[0]["state"] != "failed" or not target.auto_rollback:
            return False
        failed = self._detail(releases[0]["id"])
        good_before = any(r["state"] == "succeeded" for r in releases[1:])
        asked = self._whole(failed) and failed["rollback_of"] is None and good_before
        return asked and failed["rolled_back_by"] is None

    def _whole(self, release: dict[str, Any]) -> bool:
        """Whether the release changed the main workloads (not only a canary's)."""
        if release["generation"] is None:
            return False
        step, steps = release["canary_step"], len(release["params"]["canary"])
        return step is None or step >= steps

    # Rules: one person's action, then the wait for the services to settle

    @rule(index=st.integers(0, 1), version=st.sampled_from(VERSIONS))
    def release(self, index: int, version: str) -> None:
        chosen = self.targets[index]
        releases = self.settled[repr(chosen)]
        open_ = not releases or releases[0]["state"] in FINAL
        answer = self.admin.post(
            "/releases",
            json={
                "service": chosen.service,
                "environment": chosen.environment,
                "version": version,
            },
        )
        assert answer.status_code == (202 if open_ else 409), (releases[:1], answer.text)
        met = releases[0]["state"] if releases else "none"
        self.done.append((f"release {version}", met, answer.status_code))
        self.settled[repr(chosen)] = self._settle(chosen)

    @rule(
        index=st.integers(0, 1),
        action=st.sampled_from(ACTIONS),
        which=st.sampled_from(("newest", "running")),
    )
    def act(self, index: int, action: str, which: str) -> None:
        """Any action on the newest release or on what runs: accepted if offered, else
        refused."""
        chosen = self.targets[index]
        release_id = self._chosen(chosen, which)
        if release_id is not None:
            self._take(chosen, release_id, action)

    @rule(
        index=st.integers(0, 1),
        which=st.sampled_from(("newest", "running")),
        pick=st.integers(0, 7),
    )
    def act_as_offered(self, index: int, which: str, pick: int) -> None:
        """One of the actions offered (as a person would press a button shown)."""
        chosen = self.targets[index]
        release_id = self._chosen(chosen, which)
        if release_id is None:
            return
        offered = [
            *self.admin.get(f"/releases/{release_id}/actions").json()["actions"],
            *(
                a
                for a in self.approver.get(f"/releases/{release_id}/actions").json()["actions"]
                if a in ("approve", "reject")
            ),
        ]
        if offered:
            self._take(chosen, release_id, sorted(set(offered))[pick % len(set(offered))])

    def _chosen(self, target: Target, which: str) -> str | None:
        releases = self.settled[repr(target)]
        if which == "running":
            state = self._running(target)
            return state["release"]["id"] if state and state["release"] else None
        return releases[0]["id"] if releases else None

    def _take(self, target: Target, release_id: str, action: str) -> None:
        person = self.approver if action in ("approve", "reject") else self.admin
        offered = person.get(f"/releases/{release_id}/actions").json()["actions"]
        met = self._detail(release_id)["state"]
        body = {"confirmed": True} if action == "redeploy" else {}
        answer = person.post(f"/releases/{release_id}/{action}", json=body)
        if action in offered:
            assert answer.status_code in (200, 202), (action, offered, answer.text)
        else:
            assert answer.status_code in (403, 409, 422), (action, offered, answer.text)
        self.done.append((action, met, answer.status_code))
        self.settled[repr(target)] = self._settle(target)

    # What holds after every step

    @invariant()
    def one_release_at_a_time(self) -> None:
        for target in self.targets:
            unfinished = [r for r in self._releases(target) if r["state"] not in FINAL]
            assert len(unfinished) <= 1, (target, unfinished)

    @invariant()
    def what_state_says_runs_is_what_the_cluster_runs(self) -> None:
        for target in self.targets:
            state = self._running(target)
            live = self.cluster.read(target.service)
            if state is None or state["release"] is None:
                assert live["image"] is None, (target, live)
                continue
            assert live["image"] is not None
            assert live["image"].endswith(":" + state["release"]["version"]), (state, live)

    @invariant()
    def a_canary_service_reaches_a_new_version_only_through_its_steps(self) -> None:
        for target in self.targets:
            if not target.canary:
                continue
            state = self._running(target)
            if state is None or state["release"] is None:
                continue
            running = self._detail(state["release"]["id"])
            if running["kind"] == "rollback":
                continue
            earlier = [
                r
                for r in self._releases(target)
                if r["id"] < running["id"] and r["started_at"] is not None
            ]
            if not any(self._whole(self._detail(r["id"])) for r in earlier):
                continue  # the first to reach the cluster goes out whole
            promoted = {e["step"] for e in running["canary"] if e["what"] == "promoted"}
            assert promoted >= set(range(target.canary)), (running["id"], running["canary"])

    @invariant()
    def nothing_of_an_ended_release_is_left_running(self) -> None:
        for target in self.targets:
            releases = self._releases(target)
            if releases and releases[0]["state"] not in FINAL:
                continue
            live = self.cluster.read(target.service)
            assert not live["canary"], (target, "a canary Deployment is left")
            assert not live["hook_pods"], (target, live["hook_pods"])


# Each step settles within its own deadline; this bounds the whole.
@pytest.mark.timeout(EXAMPLES * (STEPS + 1) * 60 + 120)
async def test_random_sequences_of_actions_keep_every_rule(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    canaried = await _target(
        api, stack_env, namespace, approval=False, canary=[{"weight": 50}], template=HOOKED
    )
    approved = await _target(api, stack_env, namespace, approval=True, canary=[], template=DEMO)
    approver = await make_user(api, [{"role": "releaser"}])
    approver_token = (await token_for(api, approver))["token"]
    admin_token = api.headers["Authorization"].removeprefix("Bearer ")

    def run() -> None:
        base = fabu.api_url + "/api/v1"
        with (
            httpx.Client(base_url=base, timeout=30, headers=_bearer(admin_token)) as admin,
            httpx.Client(base_url=base, timeout=30, headers=_bearer(approver_token)) as other,
        ):
            Sequences.targets = (canaried, approved)
            Sequences.admin, Sequences.approver = admin, other
            Sequences.cluster = Cluster(str(stack_env.kubeconfig), namespace)
            run_state_machine_as_test(
                Sequences,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=list(HealthCheck),
                    database=None,
                ),
            )

    await asyncio.to_thread(run)
    accepted = {(what.split()[0], met) for what, met, status in Sequences.done if status < 300}
    print("\n".join(f"{what} on {met}: {status}" for what, met, status in Sequences.done))
    assert ("release", "none") in accepted  # the machine did release, not only refuse


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
