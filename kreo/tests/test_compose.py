"""The Compose file: valid against the Compose specification, and the CI check
that says so really rejects broken files."""

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

CHECK_PATH = Path(__file__).resolve().parents[2] / ".ci" / "compose_check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("compose_check", CHECK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose(check):
    """The committed file as Compose reads it (anchors and merges resolved)."""
    return yaml.safe_load(check.COMPOSE_FILE.read_text())


def write(tmp_path, document) -> Path:
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def errors_of(check, tmp_path, compose, change) -> list[str]:
    document = copy.deepcopy(compose)
    change(document)
    return check.compose_errors(write(tmp_path, document))


def test_committed_file_is_valid(check):
    """docker-compose.yml passes the Compose specification and cross-checks."""
    assert check.compose_errors() == []


def test_check_exits_non_zero_on_a_broken_file(check, tmp_path, compose):
    """The CI entry point fails (status 1) and names the problem."""
    document = copy.deepcopy(compose)
    document["servics"] = {}
    assert check.main([str(write(tmp_path, document))]) == 1
    assert check.main([str(check.COMPOSE_FILE)]) == 0


def test_unknown_top_level_key_fails(check, tmp_path, compose):
    """A misspelt top-level key is rejected, not ignored."""
    errors = errors_of(check, tmp_path, compose, lambda d: d.update(servics={}))
    assert errors == [
        "(top level): 'servics' does not match any of the regexes: '^x-'"
    ], errors


def test_extension_fields_are_allowed(check, tmp_path, compose):
    """x- keys (used for the shared app definition) stay valid."""
    errors = errors_of(check, tmp_path, compose, lambda d: d.update({"x-note": 1}))
    assert errors == []


def test_ports_of_the_wrong_type_fail(check, tmp_path, compose):
    """`ports: "abc"` (a string, not a list) is rejected."""

    def change(document):
        document["services"]["web"]["ports"] = "abc"

    errors = errors_of(check, tmp_path, compose, change)
    assert any(e.startswith("services.web.ports:") for e in errors), errors


def test_malformed_port_mapping_fails(check, tmp_path, compose):
    """A port entry that is no port mapping is rejected by the ports format."""

    def change(document):
        document["services"]["web"]["ports"] = ["abc"]

    errors = errors_of(check, tmp_path, compose, change)
    assert any(e.startswith("services.web.ports.0:") for e in errors), errors


def test_misspelt_depends_on_condition_fails(check, tmp_path, compose):
    """A depends_on condition outside the specification's list is rejected."""

    def change(document):
        document["services"]["web"]["depends_on"]["migrate"]["condition"] = (
            "service_completed_sucessfully"
        )

    errors = errors_of(check, tmp_path, compose, change)
    assert any(e.startswith("services.web.depends_on:") for e in errors), errors


def test_bad_healthcheck_duration_fails(check, tmp_path, compose):
    """A healthcheck interval that is not a Go duration is rejected."""

    def change(document):
        document["services"]["web"]["healthcheck"]["interval"] = "15 seconds"

    errors = errors_of(check, tmp_path, compose, change)
    assert any("healthcheck.interval" in e for e in errors), errors


def test_depends_on_an_undefined_service_fails(check, tmp_path, compose):
    """Every depends_on must name a service defined in the file."""

    def change(document):
        document["services"]["worker"]["depends_on"]["migrations"] = {
            "condition": "service_completed_successfully"
        }

    errors = errors_of(check, tmp_path, compose, change)
    assert "services.worker.depends_on: 'migrations' is not a service of this file" in (
        errors
    )


def test_list_form_depends_on_is_cross_checked(check, tmp_path, compose):
    """The short list form of depends_on is checked against the services too."""

    def change(document):
        document["services"]["beat"]["depends_on"] = ["db", "rabbitmq"]

    errors = errors_of(check, tmp_path, compose, change)
    assert errors == [
        "services.beat.depends_on: 'rabbitmq' is not a service of this file"
    ]


def test_required_variables_are_found_in_any_shape(check, tmp_path):
    """REQUIRED extended by unpacking or += still counts every name."""
    settings_file = tmp_path / "production.py"
    settings_file.write_text(
        'REQUIRED = ("A_KEY", "B_URL")\n'
        'REQUIRED = (*REQUIRED, "C_KEY")\n'
        'REQUIRED += ("D_KEY",)\n'
        'X = env.str("E_KEY")\n'
        'Y = env.str("F_OPTIONAL", default="")\n'
    )
    assert check.production_required_env(settings_file) == {
        "A_KEY",
        "B_URL",
        "C_KEY",
        "D_KEY",
        "E_KEY",
    }


def test_required_production_variables_are_read_from_the_settings(check):
    """The cross-check knows what production settings refuse to start without."""
    required = check.production_required_env()
    assert {
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
    } <= required


@pytest.mark.parametrize(
    "variable", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL"]
)
def test_web_without_a_required_variable_fails(check, tmp_path, compose, variable):
    """web must set every variable the production settings require."""

    def change(document):
        del document["services"]["web"]["environment"][variable]

    errors = errors_of(check, tmp_path, compose, change)
    assert (
        f"services.web.environment: {variable} is required by the production "
        "settings but not set"
    ) in errors


def test_a_secret_written_into_the_file_fails(check, tmp_path, compose):
    """A secret value in the file itself is refused: it must be ${NAME:?...}."""

    def change(document):
        document["services"]["worker"]["environment"]["AWS_SECRET_ACCESS_KEY"] = (
            "wJalrXUtnFEMI/K7MDENG"
        )

    errors = errors_of(check, tmp_path, compose, change)
    assert any(
        e.startswith("services.worker.environment.AWS_SECRET_ACCESS_KEY:")
        for e in errors
    ), errors


def test_unclosed_interpolation_fails(check, tmp_path, compose):
    """A broken ${...} reference is reported, as docker compose would."""

    def change(document):
        document["services"]["web"]["environment"]["KREO_RELEASE"] = "${KREO_RELEASE"

    errors = errors_of(check, tmp_path, compose, change)
    assert len(errors) == 1 and "unclosed" in errors[0], errors


def test_interpolation_follows_compose_rules(check):
    """Defaults, required values and $$ escapes resolve as in docker compose."""
    environ = {"SET": "value", "EMPTY": ""}
    assert check.interpolate("${SET:-x}/${EMPTY:-d}/${NONE-d}", environ) == (
        "value/d/d"
    )
    assert check.interpolate("${EMPTY-d}", environ) == ""
    assert check.interpolate("${SET:?missing}", environ) == "value"
    assert check.interpolate("${NONE:?missing}", environ) == check.PLACEHOLDER
    assert check.interpolate("$$HOSTNAME $SET", environ) == "$HOSTNAME value"


def test_no_secret_is_written_in_the_file(check):
    """Every secret in the file is a required reference to the environment."""
    text = check.COMPOSE_FILE.read_text()
    for name in (
        "DJANGO_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "MINIO_ROOT_PASSWORD",
        "MINIO_KMS_SECRET_KEY",
    ):
        assert re.search(r"\$\{" + name + r":\?[^}]+\}", text), name
    assert not re.search(r"(?i)(password|secret)[\w]*:\s*['\"]?[A-Za-z0-9/+]{8,}", text)


def test_production_shape(compose):
    """The services, images and start order an operator expects."""
    services = compose["services"]
    assert services["db"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("migrate", "web", "worker", "beat"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert services[name]["env_file"] == [".env"]
        environment = services[name]["environment"]
        assert environment["DJANGO_SETTINGS_MODULE"] == "kreo.settings.production"
        # The store's administrator key, in .env for minio-init, is blanked.
        assert environment["MINIO_ROOT_PASSWORD"] == ""
        # Local backup copies survive a restart: named volumes, not the tmpfs.
        for variable in ("BACKUP_COPY1_DIR", "BACKUP_COPY2_DIR"):
            mounted = [v.split(":", 1) for v in services[name]["volumes"]]
            assert [volume for volume, path in mounted if path == environment[variable]]
    # gunicorn with the threaded-worker config that `make run` and the image
    # use too (README "Slow clients").
    assert services["web"]["command"][:3] == [
        "gunicorn",
        "-c",
        "deploy/gunicorn/gunicorn.conf.py",
    ]
    assert services["worker"]["command"][:4] == ["celery", "-A", "kreo", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "kreo", "beat"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["db"] == {"condition": "service_healthy"}
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    # Only nginx is published, on the loopback only: TLS is terminated by the
    # proxy in front of it; web is reached through nginx alone.
    assert "ports" not in services["web"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert all(p.startswith("127.0.0.1:") for p in proxy["ports"])
    assert proxy["environment"]["KREO_UPSTREAM"] == "web:8000"
    assert "./deploy/nginx/templates:/etc/nginx/templates:ro" in proxy["volumes"]
    assert proxy["depends_on"]["web"] == {"condition": "service_healthy"}


def test_image_and_make_run_start_gunicorn_with_the_same_config():
    """The Dockerfile's CMD and `make run` use deploy/gunicorn/gunicorn.conf.py."""
    from scripts.run import web_command

    root = CHECK_PATH.parents[1]
    cmd = next(
        line
        for line in (root / "Dockerfile").read_text().splitlines()
        if line.startswith("CMD")
    )
    assert '"gunicorn", "-c", "deploy/gunicorn/gunicorn.conf.py"' in cmd
    assert web_command("127.0.0.1", "8000")[1:3] == [
        "-c",
        str(root / "deploy" / "gunicorn" / "gunicorn.conf.py"),
    ]


def test_buckets_are_created_with_object_lock_in_london(compose):
    """Backups, audit archives and the erasure ledger get object lock; all
    four buckets are in eu-west-2."""
    init = compose["services"]["minio-init"]
    script = init["entrypoint"][-1]
    environment = init["environment"]
    assert environment["REGION"] == "${AWS_S3_REGION_NAME:-eu-west-2}"
    assert environment["FILES_BUCKET"].endswith(":-kreo-files}")
    assert environment["BACKUP_BUCKET"].endswith(":-kreo-backups}")
    assert environment["ARCHIVE_BUCKET"].endswith(":-kreo-audit-archive}")
    assert environment["LEDGER_BUCKET"].endswith(":-kreo-key-ledger}")
    made = [line for line in script.splitlines() if line.startswith("mc mb ")]
    assert len(made) == 4
    assert all('--region "$$REGION"' in line for line in made)
    locked = {
        line.rsplit("/", 1)[-1].strip('"') for line in made if "--with-lock" in line
    }
    assert locked == {"$$BACKUP_BUCKET", "$$ARCHIVE_BUCKET", "$$LEDGER_BUCKET"}
    # Encrypted at rest by default (the app also asks for SSE on each object).
    assert 'mc encrypt set sse-s3 "kreo/$$bucket"' in script
    assert compose["services"]["minio"]["environment"]["MINIO_KMS_SECRET_KEY"]
    assert init["depends_on"]["minio"] == {"condition": "service_healthy"}
