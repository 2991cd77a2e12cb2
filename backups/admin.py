"""Backups in the admin: sets and the state of each copy, "back up now",
"verify", restore drills, and the age of the last good set."""

import time
import uuid

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from backups import selectors, services, tasks
from backups.models import BackupCopy, BackupSet, CopyState, RestoreDrill
from kreo.adminkit import ReadOnlyAdmin

QUEUED = (
    "Backup queued as task {task} (id {task_id}) for {actor}: it appears in "
    "this list as a new set when the worker has taken it."
)
VERIFIED = "Set {id}: every artifact of every copy matches the manifest."
VERIFY_FAILED = "Set {id}: {count} faulty artifact(s): {names}."
NOT_ALLOWED = "Only superusers may start backups or verify them."
FAILURE_CHARS = 160  # the list shows the start of an error; hover for more

# Colours live in static/css/admin-backups.css (the CSP allows no inline
# style attribute): one class per state, amber for an incomplete set.
STATES = frozenset(
    {"good", "done", "incomplete", "skipped", "running", "pending", "failed"}
    | {"pruned", "locked"}
)


def _badge(state: str):
    known = state if state in STATES else "unknown"
    return format_html('<strong class="state state-{}">{}</strong>', known, state)


class BackupCopyInline(ReadOnlyAdmin, admin.TabularInline):
    model = BackupCopy
    verbose_name_plural = "backup copies"  # not Django's "backup copys"
    fields = ["number", "state", "location", "size", "locked_until", "attempts"]
    readonly_fields = fields + ["error"]
    extra = 0


@admin.register(BackupSet)
class BackupSetAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    class Media:
        css = {"all": ("css/admin-backups.css",)}

    list_display = [
        "id",
        "created_at",
        "set_state",
        "copy_1",
        "copy_2",
        "copy_3",
        "verified",
        "trigger",
        "failure",
    ]
    list_filter = ["state", "trigger"]
    readonly_fields = [
        "created_at",
        "finished_at",
        "state",
        "trigger",
        "actor",
        "engine",
        "error",
        "verified_at",
        "verify_ok",
        "verify_report",
        "manifest",
    ]
    inlines = [BackupCopyInline]
    actions = ["verify_sets"]
    change_list_template = "backups/admin/backupset_change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("copies")

    @admin.display(description="state")
    def set_state(self, obj):
        return _badge(obj.state)

    def _copy(self, obj, number):
        return _badge(obj.copy_state(number) or "-")

    @admin.display(description="copy 1 (native, AES-GCM)")
    def copy_1(self, obj):
        return self._copy(obj, 1)

    @admin.display(description="copy 2 (logical, age)")
    def copy_2(self, obj):
        return self._copy(obj, 2)

    @admin.display(description="copy 3 (S3)")
    def copy_3(self, obj):
        return self._copy(obj, 3)

    @admin.display(description="why it failed")
    def failure(self, obj):
        """The error of each failed copy (the same error once), else the set's."""
        reasons: dict[str, list[int]] = {}
        for copy in sorted(obj.copies.all(), key=lambda c: c.number):
            if copy.state == CopyState.FAILED and copy.error:
                reasons.setdefault(copy.error, []).append(copy.number)
        if not reasons and obj.error:
            reasons[obj.error] = []
        if not reasons:
            return "-"
        lines = []
        for error, numbers in reasons.items():
            which = ", ".join(map(str, numbers))
            prefix = f"copy {which}: " if len(numbers) == 1 else f"copies {which}: "
            lines.append((prefix if numbers else "") + " ".join(error.split()))
        full = " | ".join(lines)
        return format_html(
            '<span class="backup-failure" title="{}">{}</span>',
            Truncator(full).chars(1000),
            Truncator(full).chars(FAILURE_CHARS),
        )

    @admin.display(description="verified")
    def verified(self, obj):
        if obj.verify_ok is None:
            return "-"
        return _badge("good" if obj.verify_ok else "failed")

    def get_urls(self):
        return [
            path(
                "backup-now/",
                self.admin_site.admin_view(self.backup_now_view),
                name="backups_backupset_backup_now",
            ),
            *super().get_urls(),
        ]

    def backup_now_view(self, request):
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:backups_backupset_changelist"))
        if not request.user.is_superuser:
            raise PermissionDenied(NOT_ALLOWED)
        actor_id = request.user.pk
        task_id = str(uuid.uuid4())
        # When pressed: a set started after it covers it (backups.tasks).
        pressed = time.time()
        transaction.on_commit(
            lambda: tasks.backup_manual.apply_async(
                kwargs={"actor_id": actor_id, "requested_at": pressed},
                task_id=task_id,
            )
        )
        self.message_user(
            request,
            QUEUED.format(
                task=tasks.backup_manual.name, task_id=task_id, actor=request.user
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:backups_backupset_changelist"))

    @admin.action(description="Verify selected sets (decrypt every copy)")
    def verify_sets(self, request, queryset):
        if not request.user.is_superuser:
            raise PermissionDenied(NOT_ALLOWED)
        for backup_set in queryset:
            results = services.backup_verify(backup_set=backup_set, actor=request.user)
            bad = [r for r in results if not r["ok"]]
            if bad:
                names = ", ".join(f"copy {r['copy']} {r['artifact']}" for r in bad)
                self.message_user(
                    request,
                    VERIFY_FAILED.format(id=backup_set.pk, count=len(bad), names=names),
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request, VERIFIED.format(id=backup_set.pk), messages.SUCCESS
                )

    def changelist_view(self, request, extra_context=None):
        age = services.backup_age_hours()
        drill = selectors.restore_drill_latest()
        context = {
            "backup_age_hours": age,
            "backup_age_stale": age is None or age > settings.BACKUP_MAX_AGE_HOURS,
            "backup_max_age_hours": settings.BACKUP_MAX_AGE_HOURS,
            "latest_drill": drill,
            "backup_no_offsite": not settings.BACKUP_S3_BUCKET and services.NO_BUCKET,
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)


@admin.register(RestoreDrill)
class RestoreDrillAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    class Media:
        css = {"all": ("css/admin-backups.css",)}

    list_display = ["id", "backup_set", "started_at", "result", "copy_number"]
    readonly_fields = [
        "backup_set",
        "started_at",
        "finished_at",
        "ok",
        "copy_number",
        "mismatches",
        "error",
    ]

    @admin.display(description="result")
    def result(self, obj):
        state = {True: "good", False: "failed", None: "running"}[obj.ok]
        return _badge(state)
