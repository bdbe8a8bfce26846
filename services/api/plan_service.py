"""Release plans, between the HTTP edges and the stores, and the conductor's steps.

A plan's rules are a release's: the same grants (a releaser needs one for every
item), approval by someone else where the environment asks for it, freeze windows,
the versions an environment takes only after an earlier one. Its items become
ordinary releases (``release_service.new_release`` and ``releasing.start``) when
their wave starts.

:func:`advance` is the conductor's step of a running plan; :func:`begin` starts a
scheduled one at its time. Both write the plan only on the revision they read, so
any number of API replicas may call them on the same plan: one step wins, the
others read it again.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog
from pydantic import BaseModel

from services.api import release_service, review
from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.diff import ManifestDiff
from services.api.releasing import InPlan, Starter, freeze_check, retired, start, upstream
from services.api.schemas import ActionIn, DecisionIn, PlanIn, PlanOptions, PromoteIn
from shared.errors import Conflict, FabuError, Forbidden, Invalid, NotFound, found
from shared.ids import ReleaseId
from shared.messaging.messages import PlanMessage
from shared.models.base import now
from shared.models.catalog import Environment, Service
from shared.models.plan import (
    ItemState,
    OnFailure,
    Plan,
    PlanItem,
    PlanKind,
    PlanState,
    waves_of,
)
from shared.models.release import Release, ReleaseKind
from shared.models.release_parts import Decision, FreezeOverride
from shared.release.machine import ReleaseState
from shared.store.mongo import new_id

log = structlog.get_logger()
# A step that loses the plan to another writer reads it again, this often.
ATTEMPTS = 8
# An item asked for this long ago whose release was never stored is asked for again
# (its conductor died between the two).
CLAIM_STALE_S = 30.0
# A time this far in the past is refused as a schedule (a little is the clock's slack).
PAST_SLACK_S = 60.0


# Reading


async def _found(api: Api, plan_id: str) -> Plan:
    return found(await api.plans.get(plan_id), f"plan {plan_id!r}")


async def get(api: Api, principal: Principal, plan_id: str) -> Plan:
    """The plan, its items' states as their releases have them now."""
    need(principal, Permission.VIEW)
    plan = await _found(api, plan_id)
    _, plan.notifications = await asyncio.gather(
        _mirror(api, plan), api.releases.deliveries.of(ReleaseId(plan.id))
    )
    return plan


async def page(
    api: Api,
    principal: Principal,
    environment: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> list[Plan]:
    need(principal, Permission.VIEW)
    return await api.plans.page(environment, cursor, limit)


class ItemReview(BaseModel):
    """What one item would change: the version running now → the one asked, and the
    manifest diff against the live objects (or why there is none)."""

    service: str
    wave: int
    version: str
    running: str | None
    template: str
    diff: ManifestDiff | None
    diff_error: str = ""


async def _item_review(api: Api, plan: Plan, env: Environment, item: PlanItem) -> ItemReview:
    running = await api.releases.running(item.service, plan.environment)
    shown = ItemReview(
        service=item.service,
        wave=item.wave,
        version=item.version,
        running=running.version if running else None,
        template="",
        diff=None,
    )
    try:
        release = await _release_of(api, plan, env, item, ReleaseId("preview"))
    except FabuError as exc:
        shown.diff_error = exc.message
        return shown
    shown.template = f"{release.template_id} version {release.template_version}"
    _, shown.diff, shown.diff_error = await review.diff(api, release)
    return shown


async def review_items(api: Api, principal: Principal, plan_id: str) -> list[ItemReview]:
    """Every item's change against what runs now, for whoever approves the plan (its
    items not yet started; a started one's release page says what it did)."""
    need(principal, Permission.VIEW)
    plan = await _found(api, plan_id)
    env = await _environment(api, plan.environment)
    waiting = [i for i in plan.items if i.release_id is None]
    return list(await asyncio.gather(*(_item_review(api, plan, env, i) for i in waiting)))


# Creating


async def _environment(api: Api, name: str, field: str = "environment") -> Environment:
    env = await api.catalog.environment(name)
    if env is None:
        raise NotFound(f"environment {name!r} not found", field=field)
    return env


async def _service(api: Api, name: str, field: str) -> Service:
    service = await api.catalog.service(name)
    if service is None:
        raise NotFound(f"service {name!r} not found", field=field)
    return service


async def _release_of(
    api: Api, plan: Plan, env: Environment, item: PlanItem, release_id: ReleaseId
) -> Release:
    """The release an item becomes (not yet stored)."""
    service = await _service(api, item.service, "service")
    if item.restore is not None:
        source = found(await api.releases.get(item.restore), f"release {item.restore!r}")
        description = f"plan {plan.name}: roll back to {source.version} (release {source.id})"
        return source.again(release_id, ReleaseKind.ROLLBACK, description, env.namespace)
    description = f"plan {plan.name}" + (f": {plan.description}" if plan.description else "")
    return await release_service.new_release(
        api, service, env, item.version, description[:2000], item.template_version, release_id
    )


async def _check_items(api: Api, principal: Principal, env: Environment, plan: Plan) -> None:
    """422 naming every item that could not be released now, and why (403 for grants)."""

    async def check(item: PlanItem) -> None:
        service = await _service(api, item.service, "service")
        principal.must_release(env.name, service)
        retired(service, env)
        if item.restore is None:
            await upstream(api.releases, env, item.service, item.version)
        await _release_of(api, plan, env, item, ReleaseId("check"))

    found_errors = await asyncio.gather(*(check(i) for i in plan.items), return_exceptions=True)
    errors: dict[str, str] = {}
    for n, (item, error) in enumerate(zip(plan.items, found_errors, strict=True)):
        if isinstance(error, Forbidden):
            raise error
        if isinstance(error, FabuError):
            errors[f"items.{n}.{error.field or 'service'}"] = f"{item.service}: {error.message}"
        elif isinstance(error, BaseException):
            raise error
    if errors:
        raise Invalid(f"items: {'; '.join(errors.values())}", field="items", errors=errors)


def _items(body: PlanIn) -> list[PlanItem]:
    names = [i.service for i in body.items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise Invalid(f"items: {', '.join(twice)} named more than once", field="items")
    items = [
        PlanItem(service=i.service, version=i.version, wave=i.wave, after=i.after)
        for i in body.items
    ]
    try:
        waves = waves_of(items)
    except ValueError as exc:
        raise Invalid(str(exc), field="items") from exc
    for item in items:
        item.wave = waves[item.service]
    return items


def _frozen(env: Environment, principal: Principal, options: PlanOptions) -> FreezeOverride | None:
    """The freeze rules at the plan's start: now, or at its scheduled time."""
    at = options.scheduled_at
    if at is not None and at > now():
        window = env.frozen_by(at)
        if window is None:
            return None
        if not options.override_reason.strip():
            raise Invalid(
                f"scheduled_at: environment {env.name} is frozen then ({window.name}, until "
                f"{window.end.isoformat()}); pick another time, or an admin writes why it "
                "cannot wait (override_reason)",
                field="scheduled_at",
            )
        return freeze_check(env, principal, options.override_reason, at)
    return freeze_check(env, principal, options.override_reason)


async def create(
    api: Api,
    principal: Principal,
    body: PlanIn,
    kind: PlanKind = PlanKind.RELEASE,
    source: str | None = None,
    items: list[PlanItem] | None = None,
) -> Plan:
    """A plan of ``body``'s items; it waits for approval where the environment asks for
    one, then for its time, then runs its waves."""
    need(principal, Permission.RELEASE)
    if body.scheduled_at is not None and body.scheduled_at.tzinfo is None:
        raise Invalid(
            "scheduled_at: give a time zone, e.g. 2026-01-31T08:00:00Z", field="scheduled_at"
        )
    if body.scheduled_at is not None and body.scheduled_at < now() - timedelta(
        seconds=PAST_SLACK_S
    ):
        raise Invalid(
            f"scheduled_at: {body.scheduled_at.isoformat()} has passed", field="scheduled_at"
        )
    env = await _environment(api, body.environment)
    if env.archived_at is not None:
        raise Conflict(f"environment {env.name} is archived: it is released to no more")
    items = items or _items(body)
    plan = Plan(
        id=new_id(),
        name=body.name or _name(items),
        description=body.description,
        environment=env.name,
        kind=kind,
        items=items,
        concurrency=body.concurrency,
        on_failure=body.on_failure,
        operator=principal.name,
        scheduled_at=body.scheduled_at,
        source_environment=source,
    )
    await _check_items(api, principal, env, plan)
    plan.freeze_override = _frozen(env, principal, body)
    return await _store_new(api, principal.name, plan, env.approval_required)


def _name(items: list[PlanItem]) -> str:
    said = ", ".join(f"{i.service} {i.version}" for i in items[:3])
    return (said + (f" and {len(items) - 3} more" if len(items) > 3 else ""))[:100]


async def _store_new(api: Api, operator: str, plan: Plan, approval: bool) -> Plan:
    """Store a new plan in its first state, audited; one that may start now, started."""
    if approval:
        plan.moved(
            PlanState.AWAITING_APPROVAL, operator, f"asked for by {operator}; waits for approval"
        )
    elif plan.scheduled_at is not None and plan.scheduled_at > now():
        plan.moved(
            PlanState.SCHEDULED,
            operator,
            f"scheduled by {operator} for {plan.scheduled_at.isoformat()}",
        )
    else:
        plan.moved(PlanState.RUNNING, operator, f"started by {operator}")
    await api.plans.create(plan)
    await api.audit.record(
        operator,
        f"plan.{plan.kind}",
        f"plan/{plan.id}",
        after={
            "environment": plan.environment,
            "items": [f"{i.service} {i.version} (wave {i.wave})" for i in plan.items],
            "state": plan.state,
            "scheduled_at": plan.scheduled_at,
            "freeze_override": plan.freeze_override,
            "rollback_of": plan.rollback_of,
        },
        note=plan.description,
    )
    if plan.state is PlanState.RUNNING:
        await _announce(api, plan, "started")
        return await advance(api, plan)
    return plan


# Deciding and ending


async def _may_release_all(api: Api, principal: Principal, plan: Plan) -> None:
    """403 unless the principal may release every item of the plan."""
    need(principal, Permission.RELEASE)
    services = await asyncio.gather(*(_service(api, i.service, "service") for i in plan.items))
    for service in services:
        principal.must_release(plan.environment, service)


async def approve(
    api: Api, principal: Principal, plan_id: str, body: DecisionIn | None = None
) -> Plan:
    """Approve a plan awaiting approval, once for all its items: someone other than its
    operator, who may release every item. It goes on at its time (now, without one)."""
    body = body or DecisionIn()
    plan = await _found(api, plan_id)
    await _may_release_all(api, principal, plan)
    _awaiting(plan, principal, "approve")
    env = await _environment(api, plan.environment)
    override = freeze_check(env, principal, body.override_reason)
    decision = Decision(approved=True, by=principal.name, comment=body.comment)
    plan.decision = decision
    plan.freeze_override = override or plan.freeze_override
    said = f"approved by {principal.name}" + (f": {body.comment}" if body.comment else "")
    if plan.scheduled_at is not None and plan.scheduled_at > now():
        plan.moved(PlanState.SCHEDULED, principal.name, said)
    else:
        plan.moved(PlanState.RUNNING, principal.name, said)
    if not await api.plans.save(plan):
        raise Conflict(f"plan {plan_id} was decided or cancelled meanwhile")
    await api.audit.record(
        principal.name,
        "plan.approve",
        f"plan/{plan.id}",
        before={"state": PlanState.AWAITING_APPROVAL},
        after={"state": plan.state, "decision": decision},
    )
    if plan.state is PlanState.RUNNING:
        await _announce(api, plan, "started")
        return await advance(api, plan)
    return plan


def _awaiting(plan: Plan, principal: Principal, verb: str) -> None:
    if plan.state is not PlanState.AWAITING_APPROVAL:
        raise Conflict(f"plan {plan.id} is not awaiting approval: it is {plan.state}")
    if principal.name == plan.operator:
        raise Forbidden(
            f"{principal.name} asked for plan {plan.id} and cannot {verb} it: someone else "
            "must (the operator may cancel it)"
        )


async def reject(
    api: Api, principal: Principal, plan_id: str, body: DecisionIn | None = None
) -> Plan:
    """Reject a plan awaiting approval: it ends, and none of its items is released."""
    body = body or DecisionIn()
    plan = await _found(api, plan_id)
    await _may_release_all(api, principal, plan)
    _awaiting(plan, principal, "reject")
    plan.decision = Decision(approved=False, by=principal.name, comment=body.comment)
    _skip_waiting(plan)
    plan.moved(
        PlanState.REJECTED,
        principal.name,
        f"rejected by {principal.name}" + (f": {body.comment}" if body.comment else ""),
    )
    if not await api.plans.save(plan):
        raise Conflict(f"plan {plan_id} was decided or cancelled meanwhile")
    await api.audit.record(
        principal.name,
        "plan.reject",
        f"plan/{plan.id}",
        before={"state": PlanState.AWAITING_APPROVAL},
        after={"state": plan.state, "decision": plan.decision},
    )
    return plan


def _skip_waiting(plan: Plan) -> None:
    for item in plan.items:
        if item.state == ItemState.WAITING:
            item.state = ItemState.SKIPPED


async def cancel(api: Api, principal: Principal, plan_id: str) -> Plan:
    """End a plan that has not finished: no item starts after this; items running go on
    to their own end (each can be cancelled on its release's page)."""
    for _ in range(ATTEMPTS):
        plan = await _found(api, plan_id)
        if principal.name != plan.operator:
            await _may_release_all(api, principal, plan)
        else:
            need(principal, Permission.RELEASE)
        if plan.state.final:
            raise Conflict(f"plan {plan_id} has already finished: {plan.state}")
        was = plan.state
        _skip_waiting(plan)
        running = [i.service for i in plan.items if i.release_id and not i.ended]
        said = f"cancelled by {principal.name}" + (
            f"; still running, to their own end: {', '.join(running)}" if running else ""
        )
        plan.moved(PlanState.CANCELLED, principal.name, said)
        if await api.plans.save(plan):
            break
    else:
        raise Conflict(f"plan {plan_id} keeps moving on; try again")
    await api.audit.record(
        principal.name,
        "plan.cancel",
        f"plan/{plan.id}",
        before={"state": was},
        after={"state": plan.state},
    )
    if was is PlanState.RUNNING:
        await _announce(api, plan, "ended")
    return plan


# Rolling back


@dataclass(frozen=True)
class Undo:
    """What rolling a plan back restores: an item per service changed, and those left."""

    items: list[PlanItem]
    left: list[str]


async def _undo(api: Api, plan: Plan) -> Undo:
    if plan.kind is PlanKind.ROLLBACK:
        raise Conflict(f"plan {plan.id} is a rollback itself: release again to undo it")
    if not plan.state.final:
        raise Conflict(f"plan {plan.id} is {plan.state}: cancel it first, then roll it back")
    if plan.rolled_back_by:
        raise Conflict(f"plan {plan.id} was rolled back already, by plan {plan.rolled_back_by}")
    started = [i for i in plan.items if i.release_id is not None]
    heads = await asyncio.gather(*(api.releases.head(i.release_id or "") for i in started))
    last = max((i.wave for i in started), default=0)
    items, left = [], []
    for item, release in zip(started, heads, strict=True):
        if release is None or release.started_at is None:
            continue
        if item.before is None:
            left.append(f"{item.service}: nothing ran there before the plan; left as it is")
            continue
        items.append(
            PlanItem(
                service=item.service,
                version=item.before_version or "",
                wave=last - item.wave,
                restore=item.before,
            )
        )
    if not items:
        raise Conflict(
            f"plan {plan.id} changed nothing that can be restored"
            + (f" ({'; '.join(left)})" if left else "")
        )
    waves = sorted({i.wave for i in items})
    for i in items:
        i.wave = waves.index(i.wave)
    return Undo(items, left)


class RollbackPreview(BaseModel):
    """Rolling a plan back, before it is done: each service's change, reverse wave order."""

    items: list[ItemReview]
    left: list[str]


async def rollback_preview(api: Api, principal: Principal, plan_id: str) -> RollbackPreview:
    """One combined diff of a plan's rollback: each service's restored release against
    its live objects, in the order it would run."""
    need(principal, Permission.VIEW)
    plan = await _found(api, plan_id)
    undo = await _undo(api, plan)

    async def shown(item: PlanItem) -> ItemReview:
        running = await api.releases.running(item.service, plan.environment)
        seen = ItemReview(
            service=item.service,
            wave=item.wave,
            version=item.version,
            running=running.version if running else None,
            template="",
            diff=None,
        )
        try:
            seen.diff = await release_service.rollback_preview(api, principal, item.restore or "")
        except FabuError as exc:
            seen.diff_error = exc.message
        return seen

    ordered = sorted(undo.items, key=lambda i: i.wave)
    return RollbackPreview(
        items=list(await asyncio.gather(*(shown(i) for i in ordered))), left=undo.left
    )


async def rollback(
    api: Api, principal: Principal, plan_id: str, body: ActionIn | None = None
) -> Plan:
    """A plan restoring every service this one changed to what ran before it, in reverse
    wave order (each a whole-release rollback); approved where the environment asks."""
    plan = await _found(api, plan_id)
    await _may_release_all(api, principal, plan)
    env = await _environment(api, plan.environment)
    back = await _rollback_plan(api, plan, principal.name, (body.description if body else ""))
    back.freeze_override = freeze_check(env, principal, body.override_reason if body else "")
    await _claim_rollback(api, plan, back)
    return await _store_new(api, principal.name, back, env.approval_required)


async def _rollback_plan(api: Api, plan: Plan, operator: str, description: str) -> Plan:
    undo = await _undo(api, plan)
    back = Plan(
        id=new_id(),
        name=f"roll back {plan.name}"[:100],
        description=description or f"roll back plan {plan.id}",
        environment=plan.environment,
        kind=PlanKind.ROLLBACK,
        items=undo.items,
        concurrency=plan.concurrency,
        operator=operator,
        rollback_of=plan.id,
    )
    if undo.left:
        back.say(*undo.left)
    return back


async def _claim_rollback(api: Api, plan: Plan, back: Plan) -> None:
    """Name ``back`` on ``plan`` as its rollback, once (409 when another was first)."""
    for _ in range(ATTEMPTS):
        if plan.rolled_back_by:
            raise Conflict(f"plan {plan.id} was rolled back already, by plan {plan.rolled_back_by}")
        plan.rolled_back_by = back.id
        plan.say(f"rolled back by plan {back.id} ({back.operator})")
        if await api.plans.save(plan):
            return
        plan = await _found(api, plan.id)
    raise Conflict(f"plan {plan.id} keeps moving on; try again")


# Promotion


class Promoted(BaseModel):
    """One service of a promotion: what runs healthy upstream, and what runs here now."""

    service: str
    version: str
    template_version: int | None
    running: str | None
    note: str = ""


class Promotion(BaseModel):
    """What promoting would do: the items it releases, and the services it leaves."""

    source: str
    environment: str
    items: list[Promoted]
    # Already running the same version and template version there.
    unchanged: list[str]
    # Not promoted, and why (a team's services with nothing healthy upstream).
    skipped: dict[str, str]


async def promotion(api: Api, principal: Principal, body: PromoteIn) -> Promotion:
    """Exactly the versions (and template versions) that run healthy in ``source``, for
    the services named or the team's, against what runs in ``environment``."""
    need(principal, Permission.VIEW)
    if body.source == body.environment:
        raise Invalid(
            "environment: promote to another environment than the source", field="environment"
        )
    if bool(body.services) == bool(body.team):
        raise Invalid(
            "services: name the services to promote, or a team (not both)", field="services"
        )
    await asyncio.gather(
        _environment(api, body.source, "source"), _environment(api, body.environment)
    )
    named = bool(body.services)
    if named:
        candidates = body.services
    else:
        candidates = [s.name for s in await api.catalog.services() if s.team == body.team]
        if not candidates:
            raise NotFound(f"team {body.team!r} has no services", field="team")

    async def one(name: str) -> Promoted | str:
        """The item, or why there is none."""
        await _service(api, name, "services")
        upstream_run, here, config = await asyncio.gather(
            api.releases.running(name, body.source),
            api.releases.running(name, body.environment),
            api.catalog.config(name, body.environment),
        )
        if config is None:
            return f"no release config in {body.environment}"
        if upstream_run is None:
            return f"nothing runs in {body.source}"
        if upstream_run.state is not ReleaseState.SUCCEEDED:
            return (
                f"what runs in {body.source} ({upstream_run.version}, release "
                f"{upstream_run.id}) is {upstream_run.state}, not healthy"
            )
        note = ""
        pinned: int | None = upstream_run.template_version
        if config.template_id != upstream_run.template_id:
            pinned = None
            note = (
                f"{body.environment} renders template {config.template_id}, not "
                f"{upstream_run.template_id}: its current version is used"
            )
        same = (
            here is not None
            and here.version == upstream_run.version
            and (
                pinned is None
                or (here.template_id, here.template_version) == (config.template_id, pinned)
            )
        )
        if same:
            return ""
        return Promoted(
            service=name,
            version=upstream_run.version,
            template_version=pinned,
            running=here.version if here else None,
            note=note,
        )

    found_items = await asyncio.gather(*(one(n) for n in candidates))
    items, unchanged, skipped = [], [], {}
    for name, outcome in zip(candidates, found_items, strict=True):
        if isinstance(outcome, Promoted):
            items.append(outcome)
        elif outcome == "":
            unchanged.append(name)
        elif named:
            raise Invalid(f"services: {name}: {outcome}", field="services")
        else:
            skipped[name] = outcome
    return Promotion(
        source=body.source,
        environment=body.environment,
        items=items,
        unchanged=unchanged,
        skipped=skipped,
    )


async def promote(api: Api, principal: Principal, body: PromoteIn) -> Plan:
    """A plan releasing exactly what runs healthy in ``source`` to ``environment``."""
    need(principal, Permission.RELEASE)
    found_promotion = await promotion(api, principal, body)
    if not found_promotion.items:
        said = ", ".join(found_promotion.unchanged) or "none"
        raise Conflict(
            f"nothing to promote from {body.source} to {body.environment}: already the same "
            f"there: {said}" + "".join(f"; {k}: {v}" for k, v in found_promotion.skipped.items())
        )
    items = [
        PlanItem(
            service=p.service,
            version=p.version,
            wave=0,
            after=[a for a in body.after.get(p.service, []) if a != p.service],
            template_version=p.template_version,
            note=p.note,
        )
        for p in found_promotion.items
    ]
    names = {i.service for i in items}
    for item in items:
        item.after = [a for a in item.after if a in names]
    try:
        waves = waves_of(items)
    except ValueError as exc:
        raise Invalid(str(exc), field="after") from exc
    for item in items:
        item.wave = waves[item.service]
    options = PlanIn.model_construct(
        environment=body.environment,
        items=[],
        **body.model_dump(include=set(PlanOptions.model_fields)),
    )
    if not options.name:
        options.name = f"promote {body.source} → {body.environment}"
    return await create(api, principal, options, PlanKind.PROMOTION, body.source, items)


# The conductor's steps


def _announce_message(plan: Plan, what: str) -> PlanMessage:
    return PlanMessage(plan_id=plan.id, what=what)


async def _announce(api: Api, plan: Plan, what: str) -> None:
    """Tell the notifier a plan started or ended (never failing the step that did it)."""
    subject = api.bus.subjects.plan_started if what == "started" else api.bus.subjects.plan_ended
    try:
        await api.bus.publish(subject, _announce_message(plan, what))
    except Exception:
        log.exception("could not announce the plan", plan_id=plan.id, what=what)


async def _mirror(api: Api, plan: Plan) -> None:
    """Each started item's state as its release has it now (and, gone wrong, why)."""
    started = [i for i in plan.items if i.release_id is not None and not i.ended]
    heads = await asyncio.gather(*(api.releases.head(i.release_id or "") for i in started))
    for item, release in zip(started, heads, strict=True):
        if release is None:
            continue
        item.state = release.state.value
        if release.state.final and release.state is not ReleaseState.SUCCEEDED:
            item.note = release.reason or f"its release was {release.state.value}"


def _open(item: PlanItem) -> bool:
    """Whether the item's release is under way (or being asked for)."""
    return item.release_id is not None and not item.ended


def _next(plan: Plan) -> list[PlanItem]:
    """The items to start now: of the first wave not done, those waiting, up to the cap."""
    if any(i.bad for i in plan.items):
        return []
    undone = [i for i in plan.items if i.state != ReleaseState.SUCCEEDED.value]
    if not undone:
        return []
    wave = plan.wave(min(i.wave for i in undone))
    room = plan.concurrency - sum(1 for i in wave if _open(i))
    return [i for i in wave if i.state == ItemState.WAITING][: max(room, 0)]


def _stale(plan: Plan) -> list[PlanItem]:
    """Items asked for long ago whose release was never stored: asked for again."""
    late = now() - timedelta(seconds=CLAIM_STALE_S)
    return [
        i
        for i in plan.items
        if i.state == ItemState.STARTING and i.claimed_at is not None and i.claimed_at < late
    ]


def _ending(plan: Plan) -> bool:
    """Move the plan to its end when it has one (True)."""
    if all(i.state == ReleaseState.SUCCEEDED.value for i in plan.items):
        plan.moved(PlanState.SUCCEEDED, "fabu", "every item succeeded")
        return True
    bad = [i for i in plan.items if i.bad]
    if bad and not any(_open(i) for i in plan.items):
        _skip_waiting(plan)
        first = bad[0]
        plan.reason = f"{first.service} {first.version}: {first.state}" + (
            f": {first.note}" if first.note else ""
        )
        then = (
            "later waves were not started; every service it changed is rolled back"
            if plan.on_failure is OnFailure.ROLLBACK and plan.kind is not PlanKind.ROLLBACK
            else "later waves were not started"
        )
        plan.moved(PlanState.FAILED, "fabu", f"failed: {plan.reason}; {then}")
        return True
    return False


async def advance(api: Api, plan: Plan) -> Plan:
    """One step of a running plan: its items' states read from their releases, the next
    items started (a wave when the one before has succeeded), its end recorded. Safe to
    call from any number of replicas at once."""
    for _ in range(ATTEMPTS):
        if plan.state is not PlanState.RUNNING:
            return plan
        step = plan.model_copy(deep=True)
        await _mirror(api, step)
        for was, now_item in zip(plan.items, step.items, strict=True):
            if now_item.ended and not was.ended:
                note = f": {now_item.note}" if now_item.note else ""
                step.say(f"{now_item.service} {now_item.version} {now_item.state}{note}")
        stale = _stale(step)
        starting = [*_next(step), *stale]
        befores = await asyncio.gather(
            *(api.releases.running(i.service, step.environment) for i in starting)
        )
        for item, before in zip(starting, befores, strict=True):
            if not any(item is s for s in stale):
                item.release_id = ReleaseId(new_id())
                item.before = before.id if before else None
                item.before_version = before.version if before else None
            item.state = ItemState.STARTING
            item.claimed_at = now()
            step.say(
                f"wave {item.wave + 1}: {item.service} {item.version} asked for "
                f"(release {item.release_id})"
            )
        ended = _ending(step)
        if step == plan:
            return plan
        if not await api.plans.save(step):
            plan = await _found(api, plan.id)
            continue
        if starting:
            await asyncio.gather(*(_start_item(api, step, i) for i in starting))
        if ended:
            await _ended(api, step)
        return step
    return plan


async def _start_item(api: Api, plan: Plan, item: PlanItem) -> None:
    """Create and hand on the item's release, as its operator; on refusal, say why on
    the item (the plan's next step then fails it)."""
    try:
        env = await _environment(api, plan.environment)
        principal = await _operator(api, plan)
        service = await _service(api, item.service, "service")
        release = await _release_of(api, plan, env, item, item.release_id or ReleaseId(new_id()))
        starter = Starter(api.releases, api.bus, api.audit, principal, api.catalog)
        await start(
            release,
            env,
            service,
            starter,
            in_plan=InPlan(plan.id, plan.decision, plan.freeze_override),
        )
        log.info("plan item started", plan_id=plan.id, service=item.service, release_id=release.id)
    except FabuError as exc:
        if isinstance(exc, Conflict) and await api.releases.head(item.release_id or "") is not None:
            return  # started by a conductor before us
        await _refused(api, plan.id, item.service, exc.message)
    except Exception as exc:
        log.exception("could not start a plan item", plan_id=plan.id, service=item.service)
        await _refused(api, plan.id, item.service, f"could not be started: {exc}")


async def _operator(api: Api, plan: Plan) -> Principal:
    user = await api.users.get(plan.operator)
    if user is None or user.disabled:
        raise Forbidden(f"the plan's operator {plan.operator} can no longer release")
    return Principal(user, "session")


async def _refused(api: Api, plan_id: str, service: str, why: str) -> None:
    for _ in range(ATTEMPTS):
        plan = await _found(api, plan_id)
        item = plan.item(service)
        if item is None or item.state != ItemState.STARTING:
            return
        item.state = ItemState.REFUSED
        item.note = why
        plan.say(f"{service} {item.version} was not started: {why}")
        if await api.plans.save(plan):
            return


async def _ended(api: Api, plan: Plan) -> None:
    """What follows a plan's end: its notification and, when it failed and asked for it,
    the rollback of every service it changed."""
    log.info("plan ended", plan_id=plan.id, state=plan.state)
    await _announce(api, plan, "ended")
    if not (
        plan.state is PlanState.FAILED
        and plan.on_failure is OnFailure.ROLLBACK
        and plan.kind is not PlanKind.ROLLBACK
    ):
        return
    try:
        back = await _rollback_plan(
            api,
            plan,
            plan.operator,
            f"automatic rollback of plan {plan.name}: {plan.reason}"[:2000],
        )
        await _claim_rollback(api, plan, back)
    except Conflict as exc:
        log.info("plan not rolled back", plan_id=plan.id, why=exc.message)
        return
    # The plan's approval covers its own rollback, as it covered the plan.
    back.decision = plan.decision
    back.freeze_override = plan.freeze_override
    await _store_new(api, plan.operator, back, approval=False)


async def begin(api: Api, plan: Plan) -> Plan:
    """Start a scheduled plan whose time has come, once, whichever replica gets there
    first; in a freeze window its override does not cover, it fails instead."""
    env = await api.catalog.environment(plan.environment)
    window = env.frozen_by(now()) if env else None
    step = plan.model_copy(deep=True)
    covered = (
        step.freeze_override is not None
        and window is not None
        and step.freeze_override.window == window.name
    )
    if env is None or (window is not None and not covered):
        _skip_waiting(step)
        step.reason = (
            f"environment {plan.environment} is gone"
            if env is None
            else f"environment {plan.environment} was frozen at its time "
            f"({window.name if window else ''})"
        )
        step.moved(PlanState.FAILED, "fabu", f"not started: {step.reason}; nothing was released")
        if await api.plans.save(step):
            await _announce(api, step, "ended")
        return step
    late = (now() - (plan.scheduled_at or now())).total_seconds()
    step.moved(PlanState.RUNNING, "fabu", f"started at its time ({late:.1f} s after it)")
    if not await api.plans.save(step):
        return plan  # another replica started it
    await _announce(api, step, "started")
    return await advance(api, step)
