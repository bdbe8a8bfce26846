"""Every NATS subject, stream and durable consumer name Fabu uses; nowhere else spells them.

A deployment may prefix all subjects and the stream (``FABU_NATS_PREFIX``) so
that several Fabu installations, or test runs, share one NATS server.
"""

from dataclasses import dataclass

# A release waiting for approval: read by the notifier only.
AWAITING = "release.awaiting"
REQUESTED = "release.requested"
RENDERED = "release.rendered"
# A paused canary promoted to its next step: read by the deployer, as ``rendered``.
PROMOTED = "release.promoted"
APPLIED = "release.applied"
COMPLETED = "release.completed"
# A canary step is healthy and waits: read by the notifier only.
PAUSED = "release.paused"
FAILED = "release.failed"
# A release plan started its first wave, or ended: read by the notifier only.
PLAN_STARTED = "plan.started"
PLAN_ENDED = "plan.ended"
TEMPLATE_CHANGED = "template.changed"
IMAGE_BUILT = "image.built"
# Also read by every tracker as a plain subscription: each stops following it.
CANCELLED = "release.cancelled"
# A notice, outside the stream: users, tokens, sessions, environments, services, configs
# or channels changed (every process forgets what it kept of them: ``shared.store.kept``).
CHANGED = "settings.changed"

RENDERER = "renderer"
DEPLOYER = "deployer"
TRACKER = "tracker"
NOTIFIER = "notifier"
# The renderer process's other consumer: template syncs.
TEMPLATES = "templates"
# The API process's consumer: image registrations.
IMAGES = "images"
# The deployer process's other consumers: canary steps promoted, and failed releases
# to roll back where that is asked for.
PROMOTIONS = "promotions"
RECOVERIES = "recoveries"
# The notifier process's other consumer: plans started and ended.
PLANS = "plans"


@dataclass(frozen=True)
class Subjects:
    prefix: str = ""

    def _s(self, subject: str) -> str:
        return f"{self.prefix}.{subject}" if self.prefix else subject

    def bare(self, subject: str) -> str:
        """``subject`` as the constants above spell it, this installation's prefix taken
        off; "" for a subject of another installation's."""
        if not self.prefix:
            return subject
        ours = f"{self.prefix}."
        return subject.removeprefix(ours) if subject.startswith(ours) else ""

    @property
    def stream(self) -> str:
        return f"{self.prefix.upper().replace('.', '_')}_RELEASES" if self.prefix else "RELEASES"

    @property
    def all_releases(self) -> str:
        return self._s("release.>")

    @property
    def all_plans(self) -> str:
        return self._s("plan.>")

    @property
    def plan_started(self) -> str:
        return self._s(PLAN_STARTED)

    @property
    def plan_ended(self) -> str:
        return self._s(PLAN_ENDED)

    @property
    def all_templates(self) -> str:
        return self._s("template.>")

    @property
    def template_changed(self) -> str:
        return self._s(TEMPLATE_CHANGED)

    @property
    def all_images(self) -> str:
        return self._s("image.>")

    @property
    def image_built(self) -> str:
        return self._s(IMAGE_BUILT)

    @property
    def awaiting(self) -> str:
        return self._s(AWAITING)

    @property
    def requested(self) -> str:
        return self._s(REQUESTED)

    @property
    def rendered(self) -> str:
        return self._s(RENDERED)

    @property
    def promoted(self) -> str:
        return self._s(PROMOTED)

    @property
    def applied(self) -> str:
        return self._s(APPLIED)

    @property
    def paused(self) -> str:
        return self._s(PAUSED)

    @property
    def completed(self) -> str:
        return self._s(COMPLETED)

    @property
    def failed(self) -> str:
        return self._s(FAILED)

    @property
    def cancelled(self) -> str:
        return self._s(CANCELLED)

    @property
    def changed(self) -> str:
        return self._s(CHANGED)

    def consumer(self, stage: str) -> tuple[str, list[str]]:
        """The durable name of a stage's consumer and the subjects it takes."""
        inputs = {
            RENDERER: [self.requested],
            DEPLOYER: [self.rendered],
            PROMOTIONS: [self.promoted],
            RECOVERIES: [self.failed],
            TRACKER: [self.applied],
            NOTIFIER: [self.awaiting, self.applied, self.paused, self.completed, self.failed],
            TEMPLATES: [self.template_changed],
            IMAGES: [self.image_built],
            PLANS: [self.plan_started, self.plan_ended],
        }
        return stage, inputs[stage]
