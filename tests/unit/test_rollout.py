"""kubectl's rollout rules, message for message."""

from typing import Any

from services.tracker.rollout import rollout_status
from shared.objects import KubeObject


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
