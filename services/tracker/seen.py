"""What the tracker has seen of a release's workloads, ReplicaSets and pods, the causes
its new pods showed, and what is stored with the release's final state."""

import asyncio
from dataclasses import dataclass

from services.tracker.pods import Obj, replica_set_counts
from services.tracker.rollout import followed
from shared.cluster.client import Cluster
from shared.cluster.diagnosis import diagnose
from shared.cluster.timelines import PodTimelines
from shared.cluster.watches import Update
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import Diagnosis, TranscriptLine
from shared.release.machine import Failed, Observed

# A transcript line stating why new pods cannot become Ready, before the timeout.
CAUSE = "cause: "


class Seen:
    """What the tracker has seen of a release's workloads, ReplicaSets and pods."""

    def __init__(self, release: Release) -> None:
        # The newest object of each workload, by its key (``StatefulSet/db``).
        self.workloads: dict[str, Obj] = {}
        self.replica_sets: dict[str, Obj] = {}
        self.timelines = PodTimelines(release.started_at, release.pods)
        self.pods_changed = False
        # The causes stated so far (their first word: ``CrashLoopBackOff``), once each.
        self.stated = {
            line.text.removeprefix(CAUSE).partition(":")[0]
            for line in release.transcript
            if line.text.startswith(CAUSE)
        }

    def cause(self, obj: Obj) -> TranscriptLine | None:
        """A line stating why a new pod cannot become Ready, the first time it shows."""
        pod = self.timelines.get(obj["metadata"]["name"])
        if pod is None or not pod.new or not pod.cause:
            return None
        word = pod.cause.partition(":")[0]
        if word in self.stated:
            return None
        self.stated.add(word)
        return TranscriptLine(at=now(), text=f"{CAUSE}{pod.cause} (pod {pod.name})")

    def take(
        self, resource: str, kind: str, obj: Obj, lines: list[TranscriptLine] | None = None
    ) -> None:
        """Keep a ReplicaSet or pod change (the Deployment is judged by the caller), and
        add to ``lines`` the cause a new pod shows first."""
        if resource == "pods":
            self.pods_changed = self.timelines.update(kind, obj) or self.pods_changed
            if lines is not None and (line := self.cause(obj)) is not None:
                lines.append(line)
        elif kind == "DELETED":
            self.replica_sets.pop(obj["metadata"]["name"], None)
        else:
            self.replica_sets[obj["metadata"]["name"]] = obj

    def catch_up(self, updates: asyncio.Queue[Update]) -> None:
        """Take the ReplicaSet and pod changes already queued (the watches are separate streams)."""
        while not updates.empty():
            resource, kind, obj = updates.get_nowait()
            if resource in ("replicasets", "pods"):
                self.take(resource, kind, obj)

    async def outcome(
        self,
        cluster: Cluster,
        release: Release,
        failure: str | None = None,
        failing: str | None = None,
    ) -> "Ending":
        """Stored with the final state: the Deployments' ReplicaSet counts, the pods, and
        for a failure the diagnosis of the ``failing`` workload (a key)."""
        replica_sets = list(self.replica_sets.values())
        counts = [
            count
            for key, obj in self.workloads.items()
            if key.startswith("Deployment/")
            for count in replica_set_counts(replica_sets, obj)
        ]
        news = {c.name for c in counts if c.new}
        pods = self.timelines.timeline(news if counts else None)
        bundle = None
        if failure is not None:
            key = failing or next((w.key for w in followed(release)), "Deployment/")
            kind = key.partition("/")[0]
            bundle = await diagnose(
                cluster,
                release.namespace,
                self.workloads.get(key),
                failure,
                pods,
                replica_sets,
                kind=kind,
            )
        return Ending(Observed(replica_sets=counts, pods=pods), bundle)


@dataclass(frozen=True)
class Ending:
    """What is stored with a release's final state: what was observed, and for a failure
    the diagnosis."""

    observed: Observed
    diagnosis: Diagnosis | None

    def failed(self, reason: str) -> Failed:
        observed = self.observed
        return Failed(
            reason=reason,
            replica_sets=observed.replica_sets,
            pods=observed.pods,
            diagnosis=self.diagnosis,
        )
