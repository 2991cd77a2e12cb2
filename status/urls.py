from django.urls import path

from status import feeds, subscribe_views, views

app_name = "status"

urlpatterns = [
    path("", views.index, name="index"),
    path("history/<int:page>/", views.history, name="history"),
    path("incidents/<slug:public_id>/", views.incident, name="incident"),
    path("history.atom", feeds.IncidentsAtom(), name="feed-atom"),
    path("history.rss", feeds.IncidentsRss(), name="feed-rss"),
    path("api/v2/summary.json", views.summary, name="api-summary"),
    path("api/v2/status.json", views.status_json, name="api-status"),
    path("api/v2/components.json", views.components_json, name="api-components"),
    path("api/v2/incidents.json", views.incidents_json, name="api-incidents"),
    path(
        "api/v2/incidents/unresolved.json",
        views.unresolved_json,
        name="api-incidents-unresolved",
    ),
    path(
        "api/v2/scheduled-maintenances.json",
        views.maintenances_json,
        name="api-scheduled-maintenances",
    ),
    path("subscribe/", subscribe_views.subscribe, name="subscribe"),
    path(
        "subscribe/confirm/<str:token>/",
        subscribe_views.confirm,
        name="subscribe-confirm",
    ),
    path("unsubscribe/<str:token>/", subscribe_views.unsubscribe, name="unsubscribe"),
]
