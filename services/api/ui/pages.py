"""The web UI's common parts: how a page is drawn, how a refusal is shown, and how a
form is read.

Every page asks for the same permission as the JSON route behind it, with the
same dependencies (``services.api.access``: ``Viewer``, ``Releaser``...), and
reads and changes through the same service functions (``services.api.*_service``),
so the UI and the API cannot disagree about what is allowed, what is shown or what
a change does. Only what a refusal looks like differs (:func:`error_page`): a
browser without a session is sent to /login; a user without the permission gets a
403 page that says whom to ask. Forms carry the session's CSRF token as ``csrf_token``.
"""

import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from pydantic import ValidationError

from services.api.access import Lacking, Permission, Principal
from services.api.ui.i18n import LANGUAGES, pick, said, translator
from shared.errors import FabuError, Invalid, Unauthorized

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@pass_context
def _said(context: Context, text: str) -> str:
    """The ``said`` filter: a sentence Fabu wrote, in the page's language."""
    return said(text, str(context.get("language", "en")))


templates.env.filters["said"] = _said
STATIC = Path(__file__).parent / "static"
LOGIN_CSRF_COOKIE = "fabu_login"


# What each permission means, in the words of the roles.
NEEDS = {
    Permission.SIGNED_IN: "a login",
    Permission.VIEW: "a role",
    Permission.RELEASE: "a releaser grant",
    Permission.EDIT_CONFIG: "the config-admin role",
    Permission.REGISTER_IMAGE: "a releaser grant or the config-admin role",
    Permission.ADMIN: "the admin role",
}


def error_page(request: Request, exc: FabuError) -> Response:
    """What a page answers for an error it did not show itself: no caller, off to the
    login page (to come back here); a permission lacking, a 403 page that says what it
    takes and whom to ask; any other error, the error page."""
    if isinstance(exc, Unauthorized):
        then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urllib.parse.urlencode({"then": then}), 303)
    if isinstance(exc, Lacking):
        return no_access(request, exc)
    return problem(request, None, exc)


def no_access(request: Request, exc: Lacking) -> HTMLResponse:
    principal = exc.principal
    if not principal.user.grants:
        message = "You have no access to Fabu yet: ask an admin to grant you a role."
    else:
        message = (
            f"{principal.name} may not do this: it needs {NEEDS[exc.permission]}. "
            "Ask an admin for a grant."
        )
    return render(request, principal, "error.html", status_code=403, error=message, status=403)


def render(
    request: Request,
    principal: Principal | None,
    name: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    preference = principal.user.language if principal else ""
    language = pick(preference, request.headers.get("accept-language", ""))
    return templates.TemplateResponse(
        request,
        name,
        {
            "me": principal,
            "t": translator(language),
            "language": language,
            "languages": LANGUAGES,
            "csrf": getattr(request.state, "csrf", ""),
            "can": (lambda p: principal is not None and principal.holds(p)),
            "Permission": Permission,
            **context,
        },
        status_code=status_code,
    )


def problem(request: Request, principal: Principal | None, exc: FabuError) -> HTMLResponse:
    """A page for a refusal or an error the page itself cannot show."""
    return render(
        request,
        principal,
        "error.html",
        status_code=exc.status,
        error=exc.message,
        status=exc.status,
    )


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """``{field: message}`` from each error's location (data, never its text)."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if p != "params") or ""
        errors.setdefault(field.split(".")[0], error["msg"])
    return errors


def form_errors(exc: ValidationError | FabuError) -> dict[str, str]:
    """What a refused form shows, by field: the model's errors, or the service layer's
    (each path it names, else its one field)."""
    if isinstance(exc, ValidationError):
        return validation_errors(exc)
    return exc.errors or {exc.field: exc.message}


def at_row(path: str, field: str, why: str) -> str:
    """An error shown at the form's row it is about, named by its field there
    (``weight: …``) rather than its whole path (``canary[1].weight: …``)."""
    why = why.removeprefix(f"{path}:").strip()
    return f"{field}: {why}" if field else why


def form_error(exc: ValidationError | FabuError) -> str:
    """A refused form as one sentence, for a page that shows it above its forms."""
    if isinstance(exc, FabuError):
        return exc.message
    found = validation_errors(exc).items()
    return "; ".join(f"{field}: {why}" if field else why for field, why in found)


async def form(request: Request) -> dict[str, str]:
    """The form's text fields, with LF line endings (browsers send a textarea's as CRLF)."""
    data = await request.form()
    return {k: v.replace("\r\n", "\n") for k, v in data.items() if isinstance(v, str)}


def utc_time(text: str, field: str) -> datetime | None:
    """A time from a form's datetime-local box (``YYYY-MM-DDTHH:MM``), read as UTC, as
    the forms say; one written with its own offset keeps it (None when empty)."""
    if not text.strip():
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise Invalid(f"{field}: give a time as YYYY-MM-DD HH:MM (UTC)", field=field) from exc
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def next_page(path: str, filters: dict[str, str], cursor: str | None) -> str:
    """The link to the page after this one, with the same filters ("" on the last)."""
    return f"{path}?{urllib.parse.urlencode({**filters, 'cursor': cursor})}" if cursor else ""


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
