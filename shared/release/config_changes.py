"""What differs between two release configs, by path, with secrets compared by what they
hold and shown only as the mask: for the review of a release and its notification."""

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from shared.errors import FabuError
from shared.models.catalog import BaseParams
from shared.secrets import MASK, PREFIX


class ConfigChange(BaseModel):
    """One value that differs from the running release's config, by path (``env.LEVEL``):
    before and after as JSON text ("" when absent), a secret's as the mask."""

    path: str
    before: str
    after: str
    secret: bool = False


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Each value of a config by its dotted path; lists are single values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_leaves(inner, f"{path}.{key}" if path else str(key)))
        return out
    return {path: value}


def _sealed(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(PREFIX)
    if isinstance(value, dict):
        return any(_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_sealed(v) for v in value)
    return False


def _opened(value: Any, open_: Callable[[str], str]) -> Any:
    """``value`` with each sealed string opened (kept sealed if it cannot be)."""
    if isinstance(value, str) and value.startswith(PREFIX):
        try:
            return open_(value)
        except FabuError:
            return value
    if isinstance(value, dict):
        return {k: _opened(v, open_) for k, v in value.items()}
    if isinstance(value, list):
        return [_opened(v, open_) for v in value]
    return value


MISSING = object()


def _shown(value: Any, secret: bool) -> str:
    if value is MISSING:
        return ""
    return MASK if secret else json.dumps(value, ensure_ascii=False, sort_keys=True)


def config_changes(
    before: BaseParams | None, after: BaseParams, open_: Callable[[str], str]
) -> list[ConfigChange]:
    """What differs between two configs, by path; a secret (sealed anew on each save) is
    compared by what it holds and shown only as the mask. No ``before``: every value."""
    old = _leaves(before.model_dump()) if before is not None else {}
    new = _leaves(after.model_dump())
    changes = []
    for path in sorted(old.keys() | new.keys()):
        was, now_ = old.get(path, MISSING), new.get(path, MISSING)
        secret = _sealed(was) or _sealed(now_)
        same = (
            _opened(was, open_) == _opened(now_, open_)
            if secret and MISSING not in (was, now_)
            else was == now_
        )
        if not same:
            changes.append(
                ConfigChange(
                    path=path,
                    before=_shown(was, secret and was is not MISSING),
                    after=_shown(now_, secret and now_ is not MISSING),
                    secret=secret,
                )
            )
    return changes
