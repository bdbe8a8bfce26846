"""A template's parameter schema: checking values, defaults, secrets, and the stored form."""

from typing import Any

import pytest

from shared.models.catalog import BaseParams
from shared.models.parameters import (
    DEFAULT_SCHEMA,
    SchemaError,
    check_schema,
    filled,
    hidden_forms,
    masked,
    problems,
    sealed,
    secrets_in,
    unmasked,
)
from shared.secrets import MASK, Secrets, new_key
from shared.store.mongo import decode_params, encode_params
from shared.templating.render import ReleaseParams, render

SCHEMA = {
    "type": "object",
    "properties": {
        "owner": {"type": "string"},
        "port": {"type": "integer", "default": 8080},
        "ingress": {
            "type": "object",
            "properties": {"host": {"type": "string"}, "tls": {"type": "boolean", "default": True}},
        },
        "db": {
            "type": "object",
            "properties": {"password": {"type": "string", "format": "password"}},
            "required": ["password"],
        },
        "tokens": {"type": "object", "additionalProperties": {"type": "string", "writeOnly": True}},
    },
    "required": ["owner"],
}
RELEASE = ReleaseParams("r1", "web", "1.0.0", "registry/web:1.0.0", "dev", "ns")


def test_problems_name_each_path_and_never_the_value() -> None:
    found = problems(
        SCHEMA, {"ingress": {"host": 3}, "db": {"password": 12345678}, "extra": 1, "port": "x"}
    )
    assert found == {
        "params.db.password": "not a string",
        "params.extra": "not a parameter of this template",
        "params.ingress.host": "not a string",
        "params.owner": "required",
        "params.port": "not an integer",
    }
    assert not any("12345678" in why for why in found.values())
    assert problems(None, {"labels": {"app.kubernetes.io/name": 1}}) == {
        'params.labels["app.kubernetes.io/name"]': "not a string"
    }
    assert problems(None, {"replicas": 3, "env": {"A": "b"}}) == {}
    # The mask stands for a stored secret; with none stored it is no value.
    assert problems(SCHEMA, {"owner": "a", "db": {"password": MASK}}) == {
        "params.db.password": "no value is stored for this secret yet: give one"
    }


def test_defaults_are_filled_at_every_depth_but_no_required_object_is_made_up() -> None:
    assert filled(SCHEMA, {"owner": "a"}) == {"owner": "a", "port": 8080, "ingress": {"tls": True}}
    assert filled(SCHEMA, {"ingress": {"host": "h"}})["ingress"] == {"host": "h", "tls": True}
    assert filled(None, {})["replicas"] == 1
    assert set(filled(None, {})) == set(DEFAULT_SCHEMA["properties"])


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ({"type": "object", "properties": {"version": {}}}, "release parameter"),
        ({"type": "object", "properties": {"rollout_timeout_s": {}}}, "Fabu's own settings"),
        ({"type": "array"}, '"type": "object"'),
        ({"type": "object", "properties": {"p": {"type": "nope"}}}, "parameters"),
        ({"type": "object", "properties": {"p": {"type": "integer", "default": "1"}}}, "default"),
        (
            {
                "type": "object",
                "properties": {"p": {"type": "string", "writeOnly": True, "default": "x"}},
            },
            "cannot have a default",
        ),
    ],
)
def test_schemas_fabu_cannot_use_are_refused_with_where(schema: dict[str, Any], said: str) -> None:
    with pytest.raises(SchemaError, match=r"^parameters") as caught:
        check_schema(schema)
    assert said in str(caught.value)


def test_secrets_are_sealed_kept_when_masked_and_masked_when_shown() -> None:
    secrets = Secrets(new_key())
    values = {"owner": "a", "db": {"password": "s3cret-one"}, "tokens": {"ci": "tok-123"}}
    assert set(secrets_in(SCHEMA, values)) == {("db", "password"), ("tokens", "ci")}
    stored = sealed(SCHEMA, values, secrets.seal)
    assert stored["db"]["password"].startswith("fernet:")
    assert stored["owner"] == "a"
    assert masked(stored) == {"owner": "a", "db": {"password": MASK}, "tokens": {"ci": MASK}}
    # The mask sent back keeps the stored secret; a new value replaces it.
    back = unmasked(SCHEMA, {**masked(stored), "tokens": {"ci": "tok-456"}}, stored, secrets.open)
    assert back == {"owner": "a", "db": {"password": "s3cret-one"}, "tokens": {"ci": "tok-456"}}
    params = BaseParams.model_validate(stored)
    assert "s3cret-one" not in params.model_dump_json()
    assert "fernet:" not in params.model_dump_json()
    assert params.model_dump()["db"]["password"].startswith("fernet:")


def test_the_manifest_shown_hides_a_secret_and_its_base64() -> None:
    template = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: {{ service }}}\n"
        'stringData: {url: {{ "db://u:" ~ db.password ~ "@h" }}}\n'
        "data: {password: {{ db.password | b64encode }}}\n"
    )
    params = BaseParams(owner="a", db={"password": "s3cret-one"})
    rendered = render(
        template, params, RELEASE, parameters=SCHEMA, hidden=hidden_forms(["s3cret-one"])
    )
    assert "s3cret-one" in rendered.manifest
    assert "s3cret-one" not in rendered.shown
    assert "czNjcmV0LW9uZQ==" not in rendered.shown
    assert f"db://u:{MASK}@h" in rendered.shown


def test_values_are_stored_as_json_and_configs_stored_before_still_read() -> None:
    params = BaseParams(replicas=2, labels={"app.kubernetes.io/name": "web"}, canary=[])
    doc = encode_params(params.model_dump())
    assert set(doc) == {"rollout_timeout_s", "auto_rollback", "canary", "blue_green", "values"}
    assert BaseParams.model_validate(decode_params(doc)) == params
    legacy = {
        "replicas": 3,
        "container_port": 8080,
        "health_path": "/healthz",
        "labels": [{"k": "team", "v": "core"}],
        "env": [],
        "resources": [{"k": "limits", "v": [{"k": "cpu", "v": "1"}]}],
        "rollout_timeout_s": None,
        "canary": [],
    }
    read = BaseParams.model_validate(decode_params(legacy))
    assert read.template_values()["labels"] == {"team": "core"}
    assert read.template_values()["resources"] == {"limits": {"cpu": "1"}}
    assert problems(None, read.template_values()) == {}
