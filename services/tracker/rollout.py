"""A release's rollout as the tracker judges it: the workloads it waits for, kubectl's
status of each new state of them, which are done, and the lines they say.

Pure: no store, bus or cluster (the states come from the namespace watches).
"""

from services.tracker.pods import Obj
from shared.cluster.rollout import VIEWERS, Status
from shared.cluster.watches import KINDS, Update
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import TranscriptLine, Workload

# Put on a followed release's update queue to let it go (it was cancelled).
STOP: Update = ("stop", "", {})
NO_WORKLOADS = "the manifest holds no workload to wait for"


def followed(release: Release) -> list[Workload]:
    """The workloads the release waits for (an older record: its one Deployment)."""
    if release.workloads:
        return release.workloads
    if not release.deployment:
        return []
    return [
        Workload(kind="Deployment", name=release.deployment, generation=release.generation or 0)
    ]


def kubectl_line(key: str, message: str) -> str:
    """A transcript line: kubectl's, naming the StatefulSet its own lines do not name."""
    kind, _, name = key.partition("/")
    return f'statefulset "{name}": {message}' if kind == "StatefulSet" else message


def deleted(key: str, during: str) -> str:
    """Why a release fails when the workload ``key`` is deleted ``during`` its rollout or pause."""
    kind, _, name = key.partition("/")
    what = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemon set"}
    return f'{what[kind]} "{name}" was deleted during the {during}'


class Rollout:
    """The workloads of a release as the tracker judges them: each one's last line, which
    are done, and the lines not written yet."""

    def __init__(self, release: Release) -> None:
        self.generations = {w.key: w.generation for w in followed(release)}
        # A tracker taking a release over does not repeat the last line written.
        written = release.transcript[-1].text if release.transcript else ""
        self.last = dict.fromkeys(self.generations, written)
        self.done: set[str] = set()
        # Lines and pod changes wait up to ``follow.FLUSH_S`` to be written together:
        # fewer writes under load, and the final write carries whatever is still pending.
        self.pending: list[TranscriptLine] = []

    def judge(self, key: str, resource: str, obj: Obj) -> Status:
        """kubectl's status of a workload's new state; a changed one becomes a line."""
        status = VIEWERS[KINDS[resource]](obj, self.generations[key])
        if status.message != self.last[key]:
            self.pending.append(TranscriptLine(at=now(), text=kubectl_line(key, status.message)))
        self.last[key] = status.message
        if status.done:
            self.done.add(key)
        else:
            self.done.discard(key)
        return status

    @property
    def finished(self) -> bool:
        return self.done == set(self.generations)

    def waiting(self) -> list[str]:
        return [key for key in self.generations if key not in self.done]

    def timed_out(self, timeout_s: int) -> str:
        lines = [kubectl_line(k, self.last[k]) for k in self.waiting() if self.last[k]]
        return f"rollout not finished within {timeout_s}s: {'; '.join(lines) or 'no status seen'}"
