from django.urls import path

from monitoring import views

# No app namespace: these names (healthz, readyz, metrics) are a contract.
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
]
