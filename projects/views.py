"""Server-rendered pages. Each parses input, calls one service or selector, renders."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import (
    require_http_methods,
    require_POST,
    require_safe,
)

from accounts import limits
from projects import invitations, selectors, services
from projects.downloads import PREVIEW_TYPES, file_response, thumbnail_response
from projects.forms import MemberAddForm, ProjectForm, RenameForm, RoleForm, UploadForm
from projects.ledger import LedgerError
from projects.permissions import ROLE_ACTIONS, Action, project_role
from projects.storage import RETRY_AFTER, StorageUnavailable


def _errors_into(form, exc: ValidationError, field: str | None = None) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(field, exc)


PROJECTS_PER_PAGE = 20
FILES_PER_PAGE = 25
PROJECT_SORT_LABELS = {
    "name": "Name",
    "updated": "Recently updated",
    "files": "Most files",
}
FILE_SORT_LABELS = {
    "name": "Name",
    "newest": "Newest",
    "size": "Largest",
    "type": "Type",
}


def _list_params(request: HttpRequest, sorts: dict) -> tuple[str, str]:
    """The search text and the order asked for, tamed (unknown order: default)."""
    query = request.GET.get("q", "").strip()[:100]
    sort = request.GET.get("sort", "")
    return query, sort if sort in sorts else next(iter(sorts))


def _detail_context(request: HttpRequest, project, **forms) -> dict:
    role = project_role(request.user, project)
    allowed = ROLE_ACTIONS[role]
    query, sort = _list_params(request, selectors.FILE_SORTS)
    files = selectors.project_file_list(project=project, query=query, sort=sort)
    page = Paginator(files, FILES_PER_PAGE).get_page(request.GET.get("page"))
    return {
        "project": project,
        "role": role,
        "allowed": {action: action in allowed for action in Action.values},
        "files": page,
        "page": page,
        "query": query,
        "sort": sort,
        "sorts": {
            "name": "Name",
            "newest": "Newest",
            "size": "Largest",
            "type": "Type",
        },
        "members": selectors.membership_list(project=project),
        "upload_form": forms.get("upload_form") or UploadForm(),
        "previewable": PREVIEW_TYPES,
    }


@login_required
@require_safe
def project_list(request: HttpRequest) -> HttpResponse:
    query, sort = _list_params(request, selectors.PROJECT_SORTS)
    projects = selectors.project_list(user=request.user, query=query, sort=sort)
    page = Paginator(projects, PROJECTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "projects": page,
        "page": page,
        "query": query,
        "sort": sort,
        "sorts": PROJECT_SORT_LABELS,
        "any_projects": bool(query) or page.paginator.count > 0,
    }
    return render(request, "projects/list.html", context)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(
                actor=request.user, request=request, **form.cleaned_data
            )
        except ValidationError as exc:
            _errors_into(form, exc)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect(project)
    status = 400 if form.errors else 200
    return render(request, "projects/form.html", {"form": form}, status=status)


@login_required
@require_safe
def project_detail(request: HttpRequest, project_id) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.VIEW
    )
    return render(request, "projects/detail.html", _detail_context(request, project))


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_edit(request: HttpRequest, project_id) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.EDIT
    )
    initial = {"name": project.name, "description": project.description}
    form = ProjectForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(
                actor=request.user,
                project=project,
                request=request,
                **form.cleaned_data,
            )
        except ValidationError as exc:
            _errors_into(form, exc)
        else:
            messages.success(request, "Project updated.")
            return redirect(project)
    status = 400 if form.errors else 200
    return render(
        request, "projects/form.html", {"form": form, "project": project}, status=status
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_delete(request: HttpRequest, project_id) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.DELETE
    )
    status = 200
    if request.method == "POST":
        name = project.name
        try:
            services.project_delete(
                actor=request.user, project=project, request=request
            )
        except LedgerError as exc:
            messages.error(request, str(exc))
            status = 503
        else:
            messages.success(request, f"Project “{name}” and its files were deleted.")
            return redirect("projects:list")
    return render(
        request,
        "projects/confirm_delete.html",
        {
            "project": project,
            "object_label": f"the project “{project.name}”",
            "file_count": project.files.count(),
        },
        status=status,
    )


@login_required
@require_POST
def file_upload(request: HttpRequest, project_id) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.UPLOAD
    )
    form = UploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            item = services.project_file_upload(
                actor=request.user,
                project=project,
                request=request,
                upload=form.cleaned_data["file"],
                name=form.cleaned_data["name"],
            )
        except ValidationError as exc:
            _errors_into(form, exc, field="file")
        except StorageUnavailable as exc:
            # The form comes back with the message, so the upload can be
            # retried from the same page once storage answers.
            form.add_error(None, str(exc))
            response = render(
                request,
                "projects/detail.html",
                _detail_context(request, project, upload_form=form),
                status=503,
            )
            response["Retry-After"] = str(RETRY_AFTER)
            return response
        else:
            messages.success(request, f"Uploaded “{item.name}”.")
            return redirect(project)
    status = (
        413
        if any(e.code == "too_large" for e in form.errors.as_data().get("file", []))
        else 400
    )
    return render(
        request,
        "projects/detail.html",
        _detail_context(request, project, upload_form=form),
        status=status,
    )


@login_required
@require_safe
def file_download(request: HttpRequest, project_id, file_id) -> HttpResponse:
    item = selectors.project_file_get(
        user=request.user, project_id=project_id, file_id=file_id, action=Action.VIEW
    )
    return file_response(request, item)


@login_required
@require_safe
def file_preview(request: HttpRequest, project_id, file_id) -> HttpResponse:
    """A PDF or an image shown in the browser; any other file is downloaded."""
    item = selectors.project_file_get(
        user=request.user, project_id=project_id, file_id=file_id, action=Action.VIEW
    )
    return file_response(request, item, inline=True)


@login_required
@require_safe
def file_thumbnail(request: HttpRequest, project_id, file_id) -> HttpResponse:
    """The small image shown in the file list; 404 while the file has none."""
    item = selectors.project_file_get(
        user=request.user, project_id=project_id, file_id=file_id, action=Action.VIEW
    )
    return thumbnail_response(request, item)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def file_rename(request: HttpRequest, project_id, file_id) -> HttpResponse:
    item = selectors.project_file_get(
        user=request.user,
        project_id=project_id,
        file_id=file_id,
        action=Action.RENAME_FILE,
    )
    form = RenameForm(request.POST or None, initial={"name": item.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.project_file_rename(
                actor=request.user,
                item=item,
                name=form.cleaned_data["name"],
                request=request,
            )
        except ValidationError as exc:
            _errors_into(form, exc, field="name")
        else:
            messages.success(request, f"Renamed to “{item.name}”.")
            return redirect(item.project)
    status = 400 if form.errors else 200
    return render(
        request,
        "projects/file_rename.html",
        {"form": form, "item": item, "project": item.project},
        status=status,
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def file_delete(request: HttpRequest, project_id, file_id) -> HttpResponse:
    item = selectors.project_file_get(
        user=request.user,
        project_id=project_id,
        file_id=file_id,
        action=Action.DELETE_FILE,
    )
    project = item.project
    status = 200
    if request.method == "POST":
        try:
            services.project_file_delete(actor=request.user, item=item, request=request)
        except LedgerError as exc:
            messages.error(request, str(exc))
            status = 503
        else:
            messages.success(request, f"Deleted “{item.name}”.")
            return redirect(project)
    return render(
        request,
        "projects/confirm_delete.html",
        {"project": project, "object_label": f"the file “{item.name}”"},
        status=status,
    )


def _members_page(request: HttpRequest, project, form, status: int = 200):
    return render(
        request,
        "projects/members.html",
        {
            "project": project,
            "form": form,
            "members": selectors.membership_list(project=project),
            "invitations": selectors.invitation_list(project=project),
            "role_form": RoleForm(),
            "now": timezone.now(),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def member_list(request: HttpRequest, project_id) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.MANAGE_MEMBERS
    )
    form = MemberAddForm(request.POST or None)
    if request.method == "POST":
        wait = limits.limit_wait(request, scope="invite", email=request.user.email)
        if wait:
            return limits.limited_response(request, scope="invite", wait=wait)
    if request.method == "POST" and form.is_valid():
        try:
            invitations.invitation_create(
                actor=request.user,
                project=project,
                request=request,
                **form.cleaned_data,
            )
        except ValidationError as exc:
            _errors_into(form, exc)
        else:
            # The same words whether or not the address has an account.
            messages.success(
                request,
                invitations.INVITED.format(days=settings.KREO_INVITATION_DAYS),
            )
            return redirect("projects:members", project.pk)
    return _members_page(request, project, form, status=400 if form.errors else 200)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, project_id, invitation_id) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.MANAGE_MEMBERS
    )
    invitation = selectors.invitation_get(project=project, invitation_id=invitation_id)
    try:
        invitations.invitation_revoke(
            actor=request.user, invitation=invitation, request=request
        )
    except ValidationError as exc:
        for error in exc.messages:
            messages.error(request, error)
    else:
        messages.success(request, f"Withdrew the invitation of {invitation.email}.")
    return redirect("projects:members", project.pk)


@require_http_methods(["GET", "HEAD", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link of an invitation mail: a page to accept, never a change on GET."""
    user = request.user
    try:
        if request.method == "POST" and user.is_authenticated:
            membership = invitations.invitation_accept(
                user=user, token=token, request=request
            )
            messages.success(
                request,
                f"You joined {membership.project.name} as {membership.role}.",
            )
            return redirect(membership.project)
        invitation = invitations.invitation_peek(
            user=user, token=token, request=request
        )
    except invitations.InvitationRefused as exc:
        return render(
            request,
            "projects/invitation_invalid.html",
            {"message": exc.message},
            status=exc.status,
        )
    back = urlencode({"next": request.path})
    return render(
        request,
        "projects/invitation.html",
        {
            "invitation": invitation,
            "project": invitation.project,
            "login_url": f"{reverse('accounts:login')}?{back}",
            "signup_url": f"{reverse('accounts:signup')}?{back}",
        },
    )


def _member_action(
    request: HttpRequest, project_id, membership_id, apply
) -> HttpResponse:
    project = selectors.project_get(
        user=request.user, project_id=project_id, action=Action.MANAGE_MEMBERS
    )
    membership = selectors.membership_get(project=project, membership_id=membership_id)
    try:
        text = apply(project, membership)
    except ValidationError as exc:
        for error in exc.messages:
            messages.error(request, error)
    else:
        messages.success(request, text)
        if project_role(request.user, project) is None:
            return redirect("projects:list")
    return redirect("projects:members", project.pk)


@login_required
@require_POST
def member_role(request: HttpRequest, project_id, membership_id) -> HttpResponse:
    def apply(project, membership):
        form = RoleForm(request.POST)
        if not form.is_valid():
            raise ValidationError("Choose a role.")
        services.membership_change_role(
            actor=request.user,
            membership=membership,
            role=form.cleaned_data["role"],
            request=request,
        )
        return f"{membership.user.email} is now {form.cleaned_data['role']}."

    return _member_action(request, project_id, membership_id, apply)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id, membership_id) -> HttpResponse:
    def apply(project, membership):
        services.membership_remove(
            actor=request.user, membership=membership, request=request
        )
        return f"Removed {membership.user.email}."

    return _member_action(request, project_id, membership_id, apply)
