"""A template's parameters: the JSON Schema it declares, the values a release config
gives it, and the secrets among them.

A template that declares nothing has ``DEFAULT_SCHEMA``: the base parameters every
Fabu template had before templates declared their own. The top level of a schema
refuses names it does not declare unless it says ``additionalProperties`` itself,
so a misspelt parameter is an error rather than silently unused.

A property marked ``writeOnly: true`` or ``format: password`` is a secret: sealed
before it is stored (a string starting with ``fernet:``), shown as ``MASK``, and
opened only to render the manifest. Opening and masking go by that prefix, so a
secret stays one even when a later template version stops declaring it.
"""

import base64
import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema_rs

from shared.secrets import MASK, PREFIX

Schema = dict[str, Any]
Path = tuple[str | int, ...]

# What each release fills in; a template's schema cannot declare them.
RELEASE_PARAMETERS = (
    "service",
    "version",
    "image",
    "environment",
    "namespace",
    "method",
    "release_id",
)
# Fabu's own settings in a release config, next to the template's values.
FABU_SETTINGS = ("canary", "blue_green", "rollout_timeout_s", "auto_rollback")
RESERVED = RELEASE_PARAMETERS + FABU_SETTINGS
MAX_SCHEMA_CHARS = 100_000


def _text(title: str, en: str, zh_title: str, zh: str) -> dict[str, Any]:
    """A title and description in English, and in Chinese under ``x-i18n``."""
    return {
        "title": title,
        "description": en,
        "x-i18n": {"zh-CN": {"title": zh_title, "description": zh}},
    }


_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

DEFAULT_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "replicas": {
            "type": "integer",
            "minimum": 0,
            "maximum": 1000,
            "default": 1,
            **_text("Replicas", "How many pods run.", "副本数", "运行的 Pod 数量。"),
        },
        "container_port": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "default": 8080,
            **_text(
                "Container port",
                "The port the container listens on.",
                "容器端口",
                "容器监听的端口。",
            ),
        },
        "health_path": {
            "type": "string",
            "pattern": "^/",
            "default": "/healthz",
            **_text(
                "Health check path",
                "The HTTP path of the health check.",
                "健康检查路径",
                "健康检查的 HTTP 路径。",
            ),
        },
        "labels": {
            **_STRINGS,
            "default": {},
            **_text("Labels", "Labels added to the objects.", "标签", "添加到对象上的标签。"),
        },
        "resources": {
            "type": "object",
            "additionalProperties": _STRINGS,
            "default": {},
            **_text(
                "Resources",
                'Requests and limits, e.g. {"limits": {"cpu": "500m"}}.',
                "资源",
                '资源请求与限制，例如 {"limits": {"cpu": "500m"}}。',  # noqa: RUF001
            ),
        },
        "env": {
            **_STRINGS,
            "default": {},
            **_text(
                "Environment variables",
                "Environment variables of the container.",
                "环境变量",
                "容器的环境变量。",
            ),
        },
    },
    "additionalProperties": False,
}


class SchemaError(ValueError):
    """A declaration that is not a usable parameter schema; the message names where."""


def schema_of(parameters: Schema | None) -> Schema:
    """The schema a template's values are checked against."""
    if parameters is None:
        return DEFAULT_SCHEMA
    if "additionalProperties" in parameters or "unevaluatedProperties" in parameters:
        return parameters
    return {**parameters, "additionalProperties": False}


def is_secret(node: Any) -> bool:
    return isinstance(node, dict) and (
        node.get("writeOnly") is True or node.get("format") == "password"
    )


def told(found: dict[str, str]) -> str:
    """Problems by path as one sentence: ``params.owner: required; params.port: …``."""
    return "; ".join(f"{path}: {why}" for path, why in found.items())


def where(path: Path) -> str:
    """A path as the errors name it: ``params.ingress.host``, ``params.args[0]``."""
    out = "params"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _schemas(node: Any, path: Path = ()) -> Iterator[tuple[Path, Schema]]:
    """Every subschema of ``node`` with the path of keywords leading to it."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(
            value, dict
        ):
            for name, sub in value.items():
                yield from _schemas(sub, (*path, key, name))
        elif key in ("items", "additionalProperties", "not", "if", "then", "else") and isinstance(
            value, dict
        ):
            yield from _schemas(value, (*path, key))
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems") and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from _schemas(sub, (*path, key, index))


def check_schema(parameters: Any) -> None:
    """SchemaError unless ``parameters`` is a JSON Schema of an object Fabu can use."""
    if not isinstance(parameters, dict):
        raise SchemaError("parameters: give a JSON Schema object")
    if len(json.dumps(parameters)) > MAX_SCHEMA_CHARS:
        raise SchemaError(f"parameters: longer than {MAX_SCHEMA_CHARS:,} characters as JSON")
    if parameters.get("type") != "object":
        raise SchemaError('parameters.type: the parameters are an object: give "type": "object"')
    try:
        jsonschema_rs.meta.validate(parameters)
    except jsonschema_rs.ValidationError as exc:
        where = "".join(f"[{json.dumps(p)}]" for p in exc.instance_path)
        raise SchemaError(f"parameters{where}: {exc.message}") from exc
    for name in parameters.get("properties") or {}:
        if name in RELEASE_PARAMETERS:
            raise SchemaError(
                f"parameters.properties.{name}: a release parameter Fabu fills in; "
                "a template cannot declare it"
            )
        if name in FABU_SETTINGS:
            raise SchemaError(
                f"parameters.properties.{name}: one of Fabu's own settings of a release "
                "config; a template cannot declare it"
            )
    try:
        jsonschema_rs.validator_for(parameters)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        raise SchemaError(f"parameters: {exc}") from exc
    _check_nodes(parameters)


def _check_nodes(parameters: Schema) -> None:
    """Secrets are strings without a default; every other default fits its own schema."""
    for path, node in _schemas(parameters):
        where = "parameters" + "".join(f"[{json.dumps(p)}]" for p in path)
        if is_secret(node) and node.get("type") != "string":
            raise SchemaError(f'{where}: a secret (writeOnly or format: password) is a "string"')
        if "default" in node and "$ref" not in json.dumps(node):
            if is_secret(node):
                raise SchemaError(f"{where}.default: a secret cannot have a default")
            found = next(iter(jsonschema_rs.validator_for(node).iter_errors(node["default"])), None)
            if found is not None:
                raise SchemaError(f"{where}.default: {_said(found)}")


_ARTICLE = {"integer": "an integer", "object": "an object", "array": "a list"}


def _said(error: jsonschema_rs.ValidationError) -> str:
    """The error without the value it is about (which may be a secret)."""
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
        types = list(kind.types)
        named = [_ARTICLE.get(t, f"a {t}") for t in types]
        return "not " + (" or ".join(named) if named else "of the right type")
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        return "not one of " + ", ".join(json.dumps(o) for o in kind.options)
    message = error.message
    shown = json.dumps(error.instance, ensure_ascii=False)
    if message.startswith(shown):
        message = message[len(shown) :].strip()
    return message.removeprefix("is ").strip()


def problems(parameters: Schema | None, values: dict[str, Any]) -> dict[str, str]:
    """Why ``values`` do not fit the template's schema, by path (empty: they fit); a
    secret given as the mask with nothing stored behind it is one of them."""
    validator = jsonschema_rs.validator_for(schema_of(parameters))
    found: dict[str, str] = {
        where(path): "no value is stored for this secret yet: give one"
        for path, value in secrets_in(parameters, values).items()
        if value == MASK
    }
    for error in validator.iter_errors(values):
        path = tuple(error.instance_path)
        kind = error.kind
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            found.setdefault(where((*path, kind.property)), "required")
        elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            for name in kind.unexpected:
                what = "not a parameter of this template" if not path else "not allowed here"
                found.setdefault(where((*path, name)), what)
        else:
            found.setdefault(where(path), _said(error))
    return dict(sorted(found.items()))


def _resolved(root: Schema, node: Any) -> Any:
    """``node``, following a local ``$ref`` (``#/$defs/…``) once."""
    ref = node.get("$ref") if isinstance(node, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part) if isinstance(target, dict) else None
    return target if isinstance(target, dict) else node


def filled(parameters: Schema | None, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each absent property's ``default`` filled in, at every depth; an
    absent object with no default and nothing required is filled when defaults inside it
    give it content."""
    root = schema_of(parameters)

    def fill(node: Any, value: Any) -> Any:
        node = _resolved(root, node)
        if not isinstance(node, dict):
            return value
        if isinstance(value, dict):
            properties = node.get("properties") or {}
            out = dict(value)
            for name, declared in properties.items():
                sub = _resolved(root, declared)
                if name in out:
                    out[name] = fill(sub, out[name])
                elif isinstance(sub, dict) and "default" in sub:
                    out[name] = fill(sub, copy.deepcopy(sub["default"]))
                elif (
                    isinstance(sub, dict)
                    and sub.get("type") == "object"
                    and not sub.get("required")
                ):
                    inner = fill(sub, {})
                    if inner:
                        out[name] = inner
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for name in out.keys() - properties.keys():
                    out[name] = fill(extra, out[name])
            return out
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [fill(node["items"], item) for item in value]
        return value

    result: dict[str, Any] = fill(root, values)
    return result


def _mapped(
    root: Schema, node: Any, value: Any, path: Path, change: Callable[[Path, str], str]
) -> Any:
    """``value`` with ``change`` applied to each string the schema marks secret."""
    node = _resolved(root, node)
    if not isinstance(node, dict):
        return value
    if is_secret(node) and isinstance(value, str):
        return change(path, value)
    if isinstance(value, dict):
        properties = node.get("properties") or {}
        extra = node.get("additionalProperties")
        return {
            k: _mapped(root, properties.get(k, extra), v, (*path, k), change)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _mapped(root, node.get("items"), v, (*path, i), change) for i, v in enumerate(value)
        ]
    return value


def secrets_in(parameters: Schema | None, values: dict[str, Any]) -> dict[Path, str]:
    """The secrets among ``values``, by path."""
    found: dict[Path, str] = {}

    def note(path: Path, value: str) -> str:
        found[path] = value
        return value

    root = schema_of(parameters)
    _mapped(root, root, values, (), note)
    return found


def _at(values: Any, path: Path) -> Any:
    for part in path:
        if isinstance(values, dict) and isinstance(part, str):
            values = values.get(part)
        elif isinstance(values, list) and isinstance(part, int) and part < len(values):
            values = values[part]
        else:
            return None
    return values


def unmasked(
    parameters: Schema | None,
    values: dict[str, Any],
    before: dict[str, Any],
    open_: Callable[[str], str],
) -> dict[str, Any]:
    """``values`` with each secret given as ``MASK`` (unchanged) taken, opened, from
    ``before``; a MASK with no secret before it stays (``problems`` refuses it)."""

    def keep(path: Path, value: str) -> str:
        old = _at(before, path)
        if value == MASK and isinstance(old, str) and old.startswith(PREFIX):
            return open_(old)
        return value

    root = schema_of(parameters)
    result: dict[str, Any] = _mapped(root, root, values, (), keep)
    return result


def sealed(
    parameters: Schema | None, values: dict[str, Any], seal: Callable[[str], str]
) -> dict[str, Any]:
    """``values`` with each secret sealed (empty ones stay empty)."""
    root = schema_of(parameters)
    result: dict[str, Any] = _mapped(root, root, values, (), lambda _, v: seal(v) if v else v)
    return result


def _strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, change) for v in value]
    return value


def masked(value: Any) -> Any:
    """``value`` with every sealed string shown as ``MASK``."""
    return _strings(value, lambda s: MASK if s.startswith(PREFIX) else s)


def opened(value: Any, open_: Callable[[str], str]) -> tuple[Any, list[str]]:
    """``value`` with every sealed string opened, and the plain secrets it held."""
    plains: list[str] = []

    def unseal(text: str) -> str:
        if not text.startswith(PREFIX):
            return text
        plain = open_(text)
        plains.append(plain)
        return plain

    return _strings(value, unseal), plains


def hidden_forms(plains: list[str]) -> list[str]:
    """The texts to hide for each secret: itself, as base64 (a Secret's ``data``), and as
    a quoted string writes it (the API server quotes values in its messages, escaping
    quotes, backslashes and line breaks), longest first so a secret inside another is
    hidden whole."""
    given = [p for p in plains if p]
    forms = set(given)
    forms |= {base64.b64encode(p.encode()).decode() for p in given}
    forms |= {json.dumps(p)[1:-1] for p in given}
    forms |= {json.dumps(p, ensure_ascii=False)[1:-1] for p in given}
    return sorted(forms, key=len, reverse=True)


def hide(text: str, hidden: list[str]) -> str:
    """``text`` with each of ``hidden`` (from ``hidden_forms``) written as ``MASK``."""
    for secret in hidden:
        text = text.replace(secret, MASK)
    return text


def hidden_in(value: Any, hidden: list[str]) -> Any:
    """``value`` with ``hide`` applied to each string in it."""
    return _strings(value, lambda s: hide(s, hidden))
