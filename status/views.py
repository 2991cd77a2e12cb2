"""The public status page, its Statuspage-shaped JSON, feeds and subscriptions.

Pages render from selectors only; the same templates make the static copy
(status.publish), so nothing here depends on the visitor.
"""

from django.core.paginator import EmptyPage, PageNotAnInteger
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from status import api, selectors
from status.models import Incident

PAGE_NOT_FOUND = "There is no such page of incident history."
INCIDENT_NOT_FOUND = "There is no such incident."


def app_links() -> dict:
    """Where the page's links lead inside the app."""
    return {
        "root": reverse("status:index"),
        "css": static("css/status.css"),
        "js": static("js/status-time.js"),
        "subscribe": reverse("status:subscribe"),
        "static_copy": False,
    }


def page_context(*, history_page: int = 1) -> dict:
    try:
        history = selectors.incident_history(page=history_page)
    except (EmptyPage, PageNotAnInteger) as exc:
        raise Http404(PAGE_NOT_FOUND) from exc
    return {
        "overall": selectors.overall(),
        "components": [selectors.uptime(c) for c in selectors.component_list()],
        "unresolved": list(selectors.incidents_unresolved()),
        "maintenance": list(selectors.maintenance_list()),
        "history": history,
        "updated_at": selectors.page_updated_at(),
    }


@require_safe
@cache_control(max_age=30, public=True)
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "status/index.html", {**page_context(), **app_links()})


@require_safe
@cache_control(max_age=30, public=True)
def history(request: HttpRequest, page: int) -> HttpResponse:
    context = {**page_context(history_page=page), **app_links()}
    return render(request, "status/history.html", context)


@require_safe
@cache_control(max_age=30, public=True)
def incident(request: HttpRequest, public_id: str) -> HttpResponse:
    try:
        item = selectors.incident_get(public_id=public_id)
    except Incident.DoesNotExist as exc:
        raise Http404(INCIDENT_NOT_FOUND) from exc
    return render(request, "status/incident.html", {"incident": item, **app_links()})


def _document(name: str):
    @require_safe
    @cache_control(max_age=30, public=True)
    def view(request: HttpRequest) -> JsonResponse:
        response = JsonResponse(api.documents()[name])
        # Widgets on other sites read the API (Statuspage allows it too).
        response["Access-Control-Allow-Origin"] = "*"
        return response

    view.__name__ = name.replace("/", "_").replace("-", "_").replace(".", "_")
    return view


summary = _document("summary.json")
status_json = _document("status.json")
components_json = _document("components.json")
incidents_json = _document("incidents.json")
unresolved_json = _document("incidents/unresolved.json")
maintenances_json = _document("scheduled-maintenances.json")
