"""What an abort puts back when the annotation it reads was edited by hand: the
manifest's own selector or route, never an error."""

import json

from shared.cluster.objects import KubeObject
from shared.release.blue_green import _selector
from shared.release.canary import _spec

SERVICE = KubeObject(kind="Service", metadata={"name": "web"}, spec={"selector": {"app": "web"}})
ROUTE = KubeObject(kind="HTTPRoute", metadata={"name": "web"}, spec={"rules": [{"x": 1}]})


def test_a_kept_selector_is_put_back() -> None:
    assert _selector(json.dumps({"app": "old"}), SERVICE) == {"app": "old"}


def test_an_edited_selector_falls_back_to_the_manifests() -> None:
    for edited in ("not json", "[1, 2]", json.dumps({"app": 3}), "null"):
        assert _selector(edited, SERVICE) == {"app": "web"}


def test_an_edited_route_spec_falls_back_to_the_manifests() -> None:
    assert _spec(json.dumps({"rules": []}), ROUTE) == {"rules": []}
    for edited in ("{", "[]", "7"):
        assert _spec(edited, ROUTE) == {"rules": [{"x": 1}]}
