"""kubectl's rollout rules, message for message."""

from typing import Any

from shared.cluster.objects import KubeObject
from shared.cluster.rollout import Status, daemon_set_status, rollout_status, stateful_set_status


def deployment(
    generation: int = 2, observed: int = 2, wanted: int = 3, **status: Any
) -> KubeObject:
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": observed, **status},
    }


def test_waits_for_the_spec_update_to_be_observed() -> None:
    status = rollout_status(deployment(generation=3, observed=2))
    assert status.message == "Waiting for deployment spec update to be observed..."
    assert not status.done


def test_an_object_older_than_our_apply_is_not_judged() -> None:
    status = rollout_status(deployment(generation=2, observed=2), applied_generation=3)
    assert status.message == "Waiting for deployment spec update to be observed..."


def test_updated_replicas_then_old_then_available() -> None:
    assert rollout_status(deployment(updatedReplicas=1)).message == (
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...'
    )
    assert rollout_status(deployment(updatedReplicas=3, replicas=5)).message == (
        'Waiting for deployment "web" rollout to finish: 2 old replicas are pending termination...'
    )
    assert rollout_status(
        deployment(updatedReplicas=3, replicas=3, availableReplicas=1)
    ).message == (
        'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...'
    )


def test_success() -> None:
    status = rollout_status(deployment(updatedReplicas=3, replicas=3, availableReplicas=3))
    assert status.done
    assert status.message == 'deployment "web" successfully rolled out'


def test_progress_deadline_exceeded_fails() -> None:
    condition = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    status = rollout_status(deployment(updatedReplicas=1, conditions=[condition]))
    assert status.failed
    assert status.message == 'deployment "web" exceeded its progress deadline'


def daemon_set(generation: int = 1, strategy: str = "RollingUpdate", **status: int) -> KubeObject:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "generation": generation},
        "spec": {"updateStrategy": {"type": strategy}},
        "status": status,
    }


def test_a_daemon_set_is_judged_by_its_scheduled_updated_and_available_pods() -> None:
    assert (
        daemon_set_status(daemon_set(2, observedGeneration=1)).message
        == "Waiting for daemon set spec update to be observed..."
    )
    waiting = daemon_set_status(
        daemon_set(observedGeneration=1, desiredNumberScheduled=3, updatedNumberScheduled=1)
    )
    assert waiting == Status(
        'Waiting for daemon set "agent" rollout to finish: 1 out of 3 new pods have been updated...'
    )
    available = daemon_set_status(
        daemon_set(
            observedGeneration=1,
            desiredNumberScheduled=3,
            updatedNumberScheduled=3,
            numberAvailable=2,
        )
    )
    assert available.message == (
        'Waiting for daemon set "agent" rollout to finish: 2 of 3 updated pods are available...'
    )
    done = daemon_set_status(
        daemon_set(
            observedGeneration=1,
            desiredNumberScheduled=3,
            updatedNumberScheduled=3,
            numberAvailable=3,
        )
    )
    assert done == Status('daemon set "agent" successfully rolled out', done=True)


def stateful_set(replicas: int = 3, partition: int | None = None, **status: object) -> KubeObject:
    strategy: dict[str, object] = {"type": "RollingUpdate"}
    if partition is not None:
        strategy["rollingUpdate"] = {"partition": partition}
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": 1},
        "spec": {"replicas": replicas, "updateStrategy": strategy},
        "status": {"observedGeneration": 1, **status},
    }


def test_a_stateful_set_waits_for_ready_pods_then_its_revision_or_partition() -> None:
    assert stateful_set_status(stateful_set(readyReplicas=1)).message == (
        "Waiting for 2 pods to be ready..."
    )
    rolling = stateful_set(
        readyReplicas=3, updatedReplicas=1, updateRevision="db-2", currentRevision="db-1"
    )
    assert stateful_set_status(rolling).message == (
        "waiting for statefulset rolling update to complete 1 pods at revision db-2..."
    )
    done = stateful_set(
        readyReplicas=3, currentReplicas=3, updateRevision="db-2", currentRevision="db-2"
    )
    assert stateful_set_status(done) == Status(
        "statefulset rolling update complete 3 pods at revision db-2...", done=True
    )
    partitioned = stateful_set(partition=2, readyReplicas=3, updatedReplicas=0)
    assert stateful_set_status(partitioned).message == (
        "Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated..."
    )
    finished = stateful_set(partition=2, readyReplicas=3, updatedReplicas=1)
    assert stateful_set_status(finished) == Status(
        "partitioned roll out complete: 1 new pods have been updated...", done=True
    )
    unseen = stateful_set(readyReplicas=3)
    unseen["status"]["observedGeneration"] = 0
    assert (
        stateful_set_status(unseen).message
        == "Waiting for statefulset spec update to be observed..."
    )


def test_on_delete_is_refused_as_kubectl_refuses_it() -> None:
    refused = Status(
        "rollout status is only available for RollingUpdate strategy type", failed=True
    )
    assert daemon_set_status(daemon_set(strategy="OnDelete")) == refused
    on_delete = stateful_set()
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert stateful_set_status(on_delete) == refused
