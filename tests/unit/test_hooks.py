"""Hook Jobs without a cluster: their delete policy, the check of their annotations, the
causes that fail a hook at once and the sentence that says what a failed hook left."""

from pathlib import Path
from typing import Any

import pytest

from shared.cluster.manifest import delete_policy, hook_problem
from shared.cluster.objects import KubeObject
from shared.models.catalog import BaseParams
from shared.release.hook_jobs import PULL_POLLS, Verdict, consequence
from shared.templating.render import ReleaseParams, RenderError, render

DEMO = (Path(__file__).parents[2] / "devstack" / "demo" / "web-service.yaml.j2").read_text()
RELEASE = ReleaseParams(
    release_id="r1",
    service="web",
    version="1.2.3",
    image="registry.local/team/web:1.2.3",
    environment="test",
    namespace="apps",
)


def job(annotations: dict[str, str], kind: str = "Job", **spec: Any) -> KubeObject:
    return {
        "kind": kind,
        "metadata": {"name": "web-migrate", "annotations": annotations},
        "spec": spec,
    }


def hook_job(policy: str) -> str:
    return (
        "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: web-migrate\n"
        f"  annotations: {{fabu.io/hook: pre-rollout, fabu.io/hook-delete-policy: {policy!r}}}\n"
        "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
        "      containers: [{name: migrate, image: busybox}]\n"
    )


def pod(name: str = "web-migrate-x", **status: Any) -> KubeObject:
    return {"metadata": {"name": name}, "status": status}


def crash_looping(restarts: int) -> KubeObject:
    state = {"waiting": {"reason": "CrashLoopBackOff"}}
    last = {"terminated": {"exitCode": 1, "reason": "Error"}}
    status = {"name": "migrate", "restartCount": restarts, "state": state, "lastState": last}
    return pod(containerStatuses=[status])


def pulling() -> KubeObject:
    state = {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}
    return pod(containerStatuses=[{"name": "migrate", "restartCount": 0, "state": state}])


def test_a_hook_without_a_policy_replaces_an_earlier_job_and_deletes_itself_when_failed() -> None:
    default = delete_policy(job({"fabu.io/hook": "pre-rollout"}))
    assert default == {"before-hook-creation", "hook-failed"}
    policy = " hook-succeeded ,before-hook-creation"
    assert delete_policy(job({"fabu.io/hook-delete-policy": policy})) == {
        "hook-succeeded",
        "before-hook-creation",
    }


@pytest.mark.parametrize(
    ("annotations", "kind", "words"),
    [
        ({"fabu.io/hook": "pre-rollout", "fabu.io/hook-delete-policy": "hook-sucess"}, "Job",
         "Job 'web-migrate': fabu.io/hook-delete-policy 'hook-sucess': unknown policy 'hook-sucess'"),
        ({"fabu.io/hook": "pre-rollout", "fabu.io/hook-delete-policy": " , "}, "Job",
         "a comma-separated list of before-hook-creation, hook-succeeded, hook-failed"),
        ({"fabu.io/hook-delete-policy": "hook-succeeded"}, "Job",
         "fabu.io/hook-delete-policy is for Jobs annotated fabu.io/hook"),
        ({"fabu.io/hook": "pre-rollout"}, "Deployment", "fabu.io/hook is for Jobs"),
        ({"fabu.io/hook": "before"}, "Job", "'pre-rollout' or 'post-rollout'"),
    ],
)  # fmt: skip
def test_a_hook_annotation_fabu_does_not_know_is_named_with_its_object(
    annotations: dict[str, str], kind: str, words: str
) -> None:
    problem = hook_problem(job(annotations, kind))
    assert problem is not None
    assert words in problem


def test_known_hook_annotations_pass() -> None:
    for policy in ("before-hook-creation", "hook-succeeded,hook-failed", "hook-failed"):
        annotations = {"fabu.io/hook": "post-rollout", "fabu.io/hook-delete-policy": policy}
        assert hook_problem(job(annotations)) is None
    assert hook_problem(job({})) is None


def test_rendering_refuses_an_unknown_delete_policy_naming_the_job_and_the_value() -> None:
    with pytest.raises(RenderError, match=r"Job 'web-migrate'.*'hook-sucess'"):
        render(DEMO + hook_job("hook-sucess"), BaseParams(), RELEASE)
    rendered = render(DEMO + hook_job("hook-succeeded"), BaseParams(), RELEASE)
    assert "hook-succeeded" in rendered.manifest


def test_the_jobs_own_failed_condition_fails_the_hook() -> None:
    failed = job({})
    failed["status"] = {
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}
        ]
    }  # fmt: skip
    assert Verdict().fatal(failed, []) == (
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    )


def test_a_crash_loop_fails_the_hook_once_past_the_backoff_limit() -> None:
    verdict = Verdict()
    assert verdict.fatal(job({}), [crash_looping(6)]) is None  # Kubernetes' default limit: 6
    assert verdict.fatal(job({}), [crash_looping(7)]) == (
        "CrashLoopBackOff: container migrate exited 1, 7 restarts, "
        "more than the Job's backoffLimit of 6"
    )
    assert verdict.fatal(job({}, backoffLimit=1), [crash_looping(1)]) is None
    assert verdict.fatal(job({}, backoffLimit=1), [crash_looping(2)]) is not None


def test_an_unschedulable_pod_fails_the_hook_at_once() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/8 nodes are available: 8 Insufficient cpu.",
    }
    cause = Verdict().fatal(job({}), [pod(conditions=[scheduled])])
    assert cause == "Unschedulable: 0/8 nodes are available: 8 Insufficient cpu."


def test_an_image_that_cannot_be_pulled_fails_the_hook_once_it_persists() -> None:
    verdict = Verdict()
    for _ in range(PULL_POLLS - 1):
        assert verdict.fatal(job({}), [pulling()]) is None
    assert verdict.fatal(job({}), [pulling()]) == "ImagePullBackOff: not found"
    # Pulled meanwhile: the count starts again.
    verdict = Verdict()
    for _ in range(PULL_POLLS - 1):
        assert verdict.fatal(job({}), [pulling()]) is None
    assert verdict.fatal(job({}), [pod()]) is None
    assert verdict.fatal(job({}), [pulling()]) is None


def test_a_failed_hook_says_whether_a_rollback_is_needed() -> None:
    before = consequence("pre-rollout", auto_rollback=False)
    assert "workloads were not changed, so no rollback is needed." in before
    assert "which is why no automatic rollback was started" in consequence("pre-rollout", True)
    assert "rolled back automatically" in consequence("post-rollout", True)
    assert "roll back to undo them" in consequence("post-rollout", False)
