"""What a reviewer and a paused canary's watcher read: config changes by path with secrets
masked, the canary page's numbers, and the notifications' words."""

from datetime import timedelta
from typing import Any

from cli.releases import review_text
from services.api.ui.release_pages import canary_view
from services.notifier.content import content
from shared.models.base import now
from shared.models.catalog import BaseParams, CanaryStep
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent
from shared.release.config_changes import config_changes
from shared.release.machine import ReleaseState
from shared.secrets import MASK, Secrets, new_key
from tests.support.records import record

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
"""


def made(**fields: Any) -> Release:
    return record().model_copy(update=fields)


def test_config_changes_name_paths_and_mask_secrets() -> None:
    secrets = Secrets(new_key())
    before = BaseParams.model_validate(
        {"replicas": 2, "env": {"LEVEL": "info", "TOKEN": secrets.seal("s3cret")}, "gone": 1}
    )
    after = BaseParams.model_validate(
        {"replicas": 3, "env": {"LEVEL": "info", "TOKEN": secrets.seal("n3w")}, "added": "x"}
    )
    changes = {c.path: c for c in config_changes(before, after, secrets.open)}
    assert sorted(changes) == ["added", "env.TOKEN", "gone", "replicas"]
    assert (changes["replicas"].before, changes["replicas"].after) == ("2", "3")
    token = changes["env.TOKEN"]
    assert (token.before, token.after, token.secret) == (MASK, MASK, True)
    assert (changes["gone"].after, changes["added"].before) == ("", "")
    assert "s3cret" not in repr(changes)
    assert "n3w" not in repr(changes)


def test_a_secret_sealed_anew_but_the_same_is_no_change() -> None:
    secrets = Secrets(new_key())
    before = BaseParams.model_validate({"env": {"TOKEN": secrets.seal("same")}})
    after = BaseParams.model_validate({"env": {"TOKEN": secrets.seal("same")}})
    assert config_changes(before, after, secrets.open) == []


def paused(pause_s: int | None) -> tuple[Release, Any]:
    healthy_at = now() - timedelta(seconds=10)
    release = made(
        state=ReleaseState.PAUSED,
        canary_step=0,
        manifest=MANIFEST,
        params=BaseParams(canary=[CanaryStep(weight=10, pause_s=pause_s), CanaryStep(weight=50)]),
        canary=[
            CanaryEvent(step=0, weight=10, what="applied", replicas=1),
            CanaryEvent(step=0, weight=10, what="healthy", replicas=1, at=healthy_at),
        ],
    )
    return release, healthy_at


def test_a_paused_step_waiting_for_a_person_has_no_pause_to_count() -> None:
    release, _ = paused(None)
    view = canary_view(release)
    assert view is not None
    assert (view.step, view.total, view.asked, view.plan) == (1, 2, 10, [10, 50, 100])
    assert view.waits_for_person
    assert view.pause_ends is None
    row = view.rows[-1]
    assert (row.asked, row.pods, row.of_pods, row.share) == (10, 1, 3, 33)


def test_a_timed_pause_ends_its_pause_after_the_step_turned_healthy() -> None:
    release, healthy_at = paused(60)
    view = canary_view(release)
    assert view is not None
    assert not view.waits_for_person
    assert view.pause_ends == healthy_at + timedelta(seconds=60)


def test_the_canary_notification_says_step_share_and_what_it_waits_for() -> None:
    release, _ = paused(None)
    said = content(release, "canary_paused", "en", "https://fabu.example").text()
    assert "canary step 1 of 2: 10% asked, 1 canary pods healthy" in said
    assert "waiting for someone to promote or abort it" in said
    timed, _ = paused(30)
    said = content(timed, "canary_paused", "en", "https://fabu.example").text()
    assert "Fabu promotes it after its 30 s pause" in said


def test_the_approval_notification_says_what_changes_and_links_the_review() -> None:
    secrets = Secrets(new_key())
    running = made(params=BaseParams.model_validate({"replicas": 2}))
    asked = made(
        version="1.1.0",
        operator="alice",
        description="fix the login",
        state=ReleaseState.AWAITING_APPROVAL,
        params=BaseParams.model_validate({"replicas": 3, "token": secrets.seal("s3cret")}),
    )
    body = content(
        asked, "approval_needed", "en", "https://fabu.example", running, open_=secrets.open
    )
    said = body.text()
    assert "Version change: 1.0.0 → 1.1.0" in said
    assert "Requested by: alice, " in said
    assert "Why: fix the login" in said
    assert "Config changes: replicas, token" in said
    assert f"Review (diff and manifest): https://fabu.example/releases/{asked.id}" in said
    assert "s3cret" not in said


def test_fabu_release_show_prints_the_review_of_an_awaiting_release() -> None:
    review = {
        "version": "1.1.0",
        "operator": "alice",
        "created_at": "2026-12-04T10:31:07+00:00",
        "description": "three replicas",
        "template": "t version 2",
        "running": {"id": "r1", "version": "1.0.0"},
        "config_changes": [
            {"path": "replicas", "before": "", "after": "3", "secret": False},
            {"path": "db_password", "before": MASK, "after": MASK, "secret": True},
        ],
        "diff": {
            "objects": [
                {
                    "kind": "Deployment",
                    "name": "web",
                    "action": "update",
                    "diff": "-  replicas: 2\n+  replicas: 3",
                }
            ],
            "prune": ["ConfigMap/old"],
        },
    }
    assert review_text(review) == [
        "review:",
        "  version: 1.0.0 (runs now) → 1.1.0",
        "  asked by alice at 2026-12-04 10:31: three replicas",
        "  template: t version 2",
        "  config changes:",
        "    replicas: - → 3",
        f"    db_password: {MASK} → {MASK}",
        "  Deployment/web: update",
        "    -  replicas: 2",
        "    +  replicas: 3",
        "  would delete: ConfigMap/old",
    ]
    unavailable = {**review, "running": None, "diff": None, "diff_error": "the cluster is away"}
    lines = review_text(unavailable)
    assert lines[1] == "  version: nothing runs there yet → 1.1.0"
    assert lines[-1] == "  diff: not available: the cluster is away"
