"""The evidence pack page under the admin site.

Wire it in ``kreo/urls.py`` before the admin's own patterns::

    path("admin/compliance/pack/", include("compliance.pack_urls")),

The view is wrapped in ``admin.site.admin_view``: the admin's sign-in and
two-factor requirement apply.
"""

from django.contrib import admin
from django.urls import path

from compliance import pack_views

app_name = "compliance_pack"

urlpatterns = [
    path("", admin.site.admin_view(pack_views.pack_build_view), name="build"),
]
