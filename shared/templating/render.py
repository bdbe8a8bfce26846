"""Template + base parameters + release parameters → the release's manifest.

Templates run in Jinja2's sandbox with ``StrictUndefined``. Every ``{{ … }}``
emits exactly one YAML value: strings, lists and mappings are written as JSON
(which YAML reads as flow scalars and collections), so no parameter can add
keys or documents, whatever characters it holds. Build composite strings
inside the expression: ``{{ service ~ "-canary" }}``.
"""

import base64
import functools
import hashlib
import json
import re
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.cluster import names as kubenames
from shared.cluster.manifest import (
    CANARY_ANNOTATION,
    ENVIRONMENT_LABEL,
    SERVICE_LABEL,
    WORKLOADS,
    canary_target,
    hook_problem,
)
from shared.models.catalog import BaseParams
from shared.models.parameters import Schema, filled, hidden_in, hide
from shared.models.release import Release

TEMPLATE_NAME = "<template>"
# The pod-template annotation ``kubectl rollout restart`` sets; a redeploy sets it too.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RenderError(Exception):
    pass


@dataclass(frozen=True)
class ReleaseParams:
    release_id: str
    service: str
    version: str
    image: str
    environment: str
    namespace: str
    method: str = "rolling"

    @classmethod
    def of(cls, release: Release) -> "ReleaseParams":
        """The parameters a release renders its template with."""
        return cls(
            release_id=release.id,
            service=release.service,
            version=release.version,
            image=release.image,
            environment=release.environment,
            namespace=release.namespace,
        )


@dataclass(frozen=True)
class Rendered:
    # What the cluster gets, and what is shown: the same with the secrets masked.
    manifest: str
    shown: str
    # The secrets' texts masked in ``shown``, for whatever else shows the manifest.
    hidden: list[str]
    sha256: str
    # The Deployment a canary acts on ("" when the manifest names none).
    deployment: str
    objects: list[dict[str, Any]]
    # What the release waits for: (kind, name) of each Deployment, StatefulSet, DaemonSet.
    workloads: list[tuple[str, str]]


# Characters JSON leaves as they are but YAML refuses in a document (DEL, the C1
# controls, surrogates, U+FFFE/U+FFFF) or reads as line breaks and folds into a
# space inside quotes (NEL, U+2028, U+2029): written as escapes, they stay themselves.
_NOT_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _yaml_value(value: Any) -> str:
    """One YAML value as JSON (a JSON text is a YAML flow value), with the characters
    YAML refuses written as escapes."""
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return _NOT_YAML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# What one rendering may produce: characters of text, objects after YAML's aliases
# are expanded (a handful of anchors can stand for billions), and nesting.
MAX_OUTPUT = 2_000_000
MAX_NODES = 200_000
MAX_DEPTH = 64


# The widest field a format may pad to (``"%10d"``, ``"{:>10}"``, ``|center(10)``):
# far beyond any manifest's need, far below what would exhaust memory.
MAX_WIDTH = 10_000
# Objects one manifest may hold, and its rendered size.
MAX_OBJECTS = 250
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:[^{}]*\}")
_NUMBER = re.compile(r"\d+")


def _wide(number: Any) -> None:
    if isinstance(number, int) and abs(number) > MAX_WIDTH:
        raise SecurityError(f"a width or precision above {MAX_WIDTH:,} is not allowed")


def _percent_widths(text: str, args: Any) -> None:
    """SecurityError if a ``%`` format pads or cuts to more than MAX_WIDTH, literal or ``*``."""
    given = list(args) if isinstance(args, tuple) else [args]
    for field in _PERCENT_FIELD.finditer(text):
        for part in field.groups():
            if part == "*":
                _wide(given.pop(0) if given else None)
            elif part:
                _wide(int(part[:12]))


def _brace_widths(text: str) -> None:
    for spec in _BRACE_SPEC.findall(text):
        for number in _NUMBER.findall(spec.split(":", 1)[1]):
            _wide(int(number[:12]))


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox (no private or internal attributes, no changing what the
    context holds), with ``*``, ``**`` and formats kept to sizes a manifest could need."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponents above 64 are not allowed in a template")
        if operator == "*":
            for sized, times in ((left, right), (right, left)):
                sequence = isinstance(sized, str | list | tuple) and isinstance(times, int)
                if sequence and len(sized) * times > MAX_OUTPUT:
                    raise SecurityError(f"a repeated value longer than {MAX_OUTPUT:,}")
        if operator == "%" and isinstance(left, str):
            _percent_widths(left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> Any:
            _brace_widths(text)
            return wrapped(*args, **kwargs)

        return bounded


def _bounded(node: Any, depth: int = 0, budget: list[int] | None = None) -> None:
    """RenderError unless ``node`` nests at most MAX_DEPTH deep and holds at most
    MAX_NODES values, counting each alias as often as it is used."""
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise RenderError(f"the manifest holds more than {MAX_NODES:,} values")
    if depth > MAX_DEPTH:
        raise RenderError(f"the manifest nests deeper than {MAX_DEPTH} levels")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        _bounded(child, depth + 1, budget)


_env = _Sandbox(
    undefined=StrictUndefined,
    finalize=_yaml_value,
    autoescape=False,
    keep_trailing_newline=True,
)
# A Secret's ``data`` is base64: ``{{ password | b64encode }}``.
_env.filters["b64encode"] = lambda text: base64.b64encode(str(text).encode()).decode()


def _width_bounded(name: str, *positions: int) -> None:
    """Replace a filter by one that refuses widths above MAX_WIDTH at ``positions``."""
    original = _env.filters[name]

    @functools.wraps(original)  # keeps what Jinja passes first (the environment, for some)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for position in positions:
            if len(args) > position:
                _wide(args[position])
        for value in kwargs.values():
            _wide(value)
        return original(*args, **kwargs)

    _env.filters[name] = bounded


for _name, _positions in (("center", (1,)), ("indent", (1,)), ("wordwrap", (2,))):
    _width_bounded(_name, *_positions)
_format = _env.filters["format"]


def _format_bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(value, str):
        _percent_widths(value, tuple(args) or kwargs)
    return _format(value, *args, **kwargs)


_env.filters["format"] = _format_bounded


def _line_of(exc: BaseException) -> int | None:
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == TEMPLATE_NAME]
    return frames[-1].lineno if frames else None


def context(
    params: BaseParams, release: ReleaseParams, parameters: Schema | None = None
) -> dict[str, Any]:
    """What a template sees: Fabu's settings, its parameters' values with their defaults,
    and the release parameters (which no schema can redefine)."""
    values = filled(parameters, params.template_values())
    derived = {}
    if parameters is None:
        # The base parameters' env as a list of {name, value}, as a container's env is.
        derived["env_list"] = [{"name": k, "value": v} for k, v in sorted(values["env"].items())]
    return {
        **params.model_dump(include=set(BaseParams.model_fields)),
        **values,
        **derived,
        "release_id": release.release_id,
        "service": release.service,
        "version": release.version,
        "image": release.image,
        "environment": release.environment,
        "namespace": release.namespace,
        "method": release.method,
    }


@functools.lru_cache(maxsize=256)
def _compile(template: str) -> Template:
    compiled = _env.from_string(template)
    compiled.filename = TEMPLATE_NAME
    return compiled


@dataclass(frozen=True)
class Limits:
    """What one manifest may be: characters rendered, and objects."""

    max_chars: int = MAX_OUTPUT
    max_objects: int = MAX_OBJECTS


def _rendered(compiled: Template, values: dict[str, Any], most: int) -> str:
    parts, size = [], 0
    for part in compiled.generate(values):
        size += len(part)
        if size > most:
            raise RenderError(f"the rendered manifest is longer than {most:,} characters")
        parts.append(part)
    return "".join(parts)


def _template_error(exc: BaseException) -> RenderError:
    """A RenderError naming the template's line, for any error the template's code raised
    (``1/0``, ``'a' + 1``, ``range(1, 2, 0)``, a macro calling itself for ever)."""
    if isinstance(exc, TemplateSyntaxError):
        return RenderError(f"template error at line {exc.lineno}: {exc.message}")
    line = _line_of(exc)
    where = f" at line {line}" if line else ""
    if isinstance(exc, TemplateError):
        return RenderError(f"template error{where}: {exc}")
    if isinstance(exc, RecursionError):
        return RenderError(f"template error{where}: macros or includes call themselves too deeply")
    said = str(exc) or type(exc).__name__
    return RenderError(f"template error{where}: {said} ({type(exc).__name__})")


def check(template: str) -> None:
    """Parse a template; RenderError with the line when it does not."""
    try:
        _compile(template)
    except MemoryError:
        raise
    except Exception as exc:  # any failure of a hostile template is its error
        raise _template_error(exc) from exc


def render(
    template: str,
    params: BaseParams,
    release: ReleaseParams,
    restarted_at: datetime | None = None,
    *,
    parameters: Schema | None = None,
    hidden: list[str] | None = None,
    limits: Limits | None = None,
) -> Rendered:
    """Render and check a manifest from the template, its parameters' schema and
    ``params`` with their secrets opened; ``hidden`` (``parameters.hidden_forms``) are
    masked in what is shown. ``restarted_at`` stamps the pod template as ``kubectl
    rollout restart`` does, so the Deployment replaces its pods. Every object's kind,
    name and namespace must follow Kubernetes' rules (``shared.cluster.names``)."""
    limits = limits or Limits()
    try:
        values = context(params, release, parameters)
        text = _rendered(_compile(template), values, limits.max_chars)
    except (MemoryError, RenderError):
        raise
    except Exception as exc:  # any failure of a hostile template is its error
        raise _template_error(exc) from exc
    try:
        objects = [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc is not None]
    except yaml.YAMLError as exc:
        raise RenderError(f"rendered manifest is not valid YAML: {exc}") from exc
    _checked(objects, limits)
    _no_secret_names(objects, hidden or [])
    _in_namespace(objects, release.namespace)
    for obj in objects:
        if (problem := hook_problem(obj)) is not None:
            raise RenderError(problem)
    workloads = _workloads(objects)
    target = canary_target(objects)
    if params.steps and target is None:
        count = sum(kind == "Deployment" for kind, _ in workloads)
        raise RenderError(
            f"canary: the manifest holds {count} Deployments; mark the canary's with the "
            f'annotation {CANARY_ANNOTATION}: "true"'
        )
    for obj in objects:
        metadata = obj["metadata"]
        labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
        owner = {SERVICE_LABEL: release.service, ENVIRONMENT_LABEL: release.environment}
        metadata["labels"] = {**(labels or {}), **owner}
    if restarted_at is not None:
        _restart(objects, restarted_at)
    text = _dumped(objects)
    shown = _dumped(hidden_in(objects, hidden)) if hidden else text
    sha = hashlib.sha256(text.encode()).hexdigest()
    deployment = str(target["metadata"]["name"]) if target else ""
    return Rendered(
        manifest=text,
        shown=shown,
        hidden=hidden or [],
        sha256=sha,
        deployment=deployment,
        objects=objects,
        workloads=workloads,
    )


def _checked(objects: list[Any], limits: Limits) -> None:
    """RenderError unless the documents are at most ``limits.max_objects`` Kubernetes
    objects named by Kubernetes' rules, of bounded size and depth."""
    _bounded(objects)
    if len(objects) > limits.max_objects:
        raise RenderError(
            f"the manifest holds {len(objects):,} objects; at most {limits.max_objects:,} "
            "are allowed (FABU_MANIFEST_MAX_OBJECTS)"
        )
    named: list[str] = []
    for index, obj in enumerate(objects, 1):
        if not isinstance(obj, dict) or not {"apiVersion", "kind", "metadata"} <= obj.keys():
            raise RenderError(f"document {index} is not a Kubernetes object")
        if not isinstance(obj["metadata"], dict) or not obj["metadata"].get("name"):
            raise RenderError(f"document {index} ({obj['kind']}) has no metadata.name")
        named += kubenames.problems(index, obj)
    if named:
        raise RenderError("; ".join(named))


def _no_secret_names(objects: list[dict[str, Any]], hidden: list[str]) -> None:
    """RenderError if a secret is part of an object's name: a name is shown wherever the
    object is (transcripts, the live state, diffs, the cluster's own messages), so a
    secret there could not stay one. Secrets shorter than four characters are not
    looked for (too many names would hold them by chance)."""
    forms = [form for form in hidden if len(form) >= 4]
    for obj in objects:
        name = str(obj["metadata"]["name"])
        if any(form in name for form in forms):
            raise RenderError(
                f"{obj['kind']} {hide(name, hidden)!r}: a secret parameter cannot be part of "
                "an object's name, which is shown wherever the object is"
            )


def _dumped(objects: list[Any]) -> str:
    return yaml.dump_all(objects, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)


def _workloads(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The workloads, refusing what kubectl cannot follow (an ``OnDelete`` strategy)."""
    found = []
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        name = str(obj["metadata"]["name"])
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        strategy = (spec or {}).get("updateStrategy") or {}
        kind_of = strategy.get("type", "RollingUpdate") if isinstance(strategy, dict) else ""
        if obj["kind"] != "Deployment" and kind_of != "RollingUpdate":
            raise RenderError(
                f"{obj['kind']} {name!r}: rollout status is only available for "
                "RollingUpdate strategy type"
            )
        found.append((str(obj["kind"]), name))
    return found


def _in_namespace(objects: list[dict[str, Any]], namespace: str) -> None:
    """Every object once, and each of the release's namespace (RenderError naming it)."""
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        where = f"a release holds only objects of its environment's namespace {namespace!r}"
        named = obj["metadata"].get("namespace")
        if named not in (None, "", namespace):
            raise RenderError(f"{kind} {name!r} names the namespace {named!r}: {where}")
        if (kind, name) in seen:
            raise RenderError(f"{kind} {name!r} appears twice in the manifest")
        seen.add((kind, name))


def _restart(objects: list[dict[str, Any]], at: datetime) -> None:
    """Annotate each workload's pod template with ``at``."""
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            kind = obj["kind"]
            spec = obj.setdefault("spec", {})
            if not isinstance(spec, dict):
                raise RenderError(f"the {kind}'s spec is not a mapping")
            template = spec.setdefault("template", {})
            metadata = template.setdefault("metadata", {}) if isinstance(template, dict) else None
            if not isinstance(metadata, dict):
                raise RenderError(f"the {kind}'s spec.template.metadata is not a mapping")
            annotations = metadata.get("annotations") or {}
            metadata["annotations"] = {**annotations, RESTARTED_AT: at.isoformat()}
