"""The Kubernetes manifests (deploy/k8s): each overlay renders, validates
strictly, passes its cross-checks and checkov; the checks really reject
broken copies; secrets are sealed and split per workload; seal.sh makes
what the manifests reference."""

import base64
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECK_PATH = ROOT / ".ci" / "k8s_check.py"
K8S = ROOT / "deploy" / "k8s"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"
)


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("k8s_check", CHECK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(check):
    return {overlay: check.render(overlay) for overlay in check.OVERLAYS}


def find(docs, kind, name):
    return next(
        doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name
    )


def pod_spec(docs, kind, name):
    return find(docs, kind, name)["spec"]["template"]["spec"]


def secret_names(container) -> set[str]:
    return {
        item["valueFrom"]["secretKeyRef"]["name"]
        for item in container.get("env", [])
        if "secretKeyRef" in (item.get("valueFrom") or {})
    }


def env_names(container) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


def test_both_regions_are_overlays(check):
    assert check.OVERLAYS == ["production", "production-de"]


@pytest.mark.parametrize("overlay", ["production", "production-de"])
def test_overlay_validates_strictly(check, rendered, overlay):
    docs = rendered[overlay]
    kinds = {doc["kind"] for doc in docs}
    assert {"SealedSecret", "Cluster", "Certificate", "NetworkPolicy"} <= kinds
    assert check.schema_errors(docs) == []


@pytest.mark.parametrize("overlay", ["production", "production-de"])
def test_overlay_cross_checks(check, rendered, overlay):
    assert check.cross_check_errors(rendered[overlay]) == []


# The first run makes checkov's virtualenv (a pip install of a few minutes).
@pytest.mark.timeout(900)
@pytest.mark.parametrize("overlay", ["production", "production-de"])
def test_checkov_passes_and_every_skip_has_a_reason(check, rendered, overlay):
    report = check.checkov(rendered[overlay])
    assert report["failed"] == 0, report["failed_checks"]
    assert report["passed"] > 100
    skips = [
        value
        for doc in rendered[overlay]
        for key, value in doc["metadata"].get("annotations", {}).items()
        if key.startswith("checkov.io/skip")
    ]
    assert skips
    for skip in skips:
        check_id, _, reason = skip.partition("=")
        assert re.fullmatch(r"CKV2?_K8S_\d+", check_id), skip
        assert len(reason) > 30, f"a skip needs its reason: {skip}"


# --- the checks reject broken copies -----------------------------------------


@pytest.fixture
def docs(rendered):
    return copy.deepcopy(rendered["production"])


def test_schema_rejects_a_misspelt_field(check, docs):
    web = pod_spec(docs, "Deployment", "kreo-web")["containers"][0]
    web["imagePullPolicyy"] = web.pop("imagePullPolicy")
    find(docs, "Cluster", "kreo-db")["spec"]["instance"] = 3
    find(docs, "SealedSecret", "kreo-oidc")["spec"]["encryptedDate"] = {}
    find(docs, "Certificate", "kreo-redis-tls")["spec"]["dnsNames"] = "kreo-redis"
    errors = check.schema_errors(docs)
    assert any("Deployment/kreo-web" in e and "imagePullPolicyy" in e for e in errors)
    assert any("Cluster/kreo-db" in e and "'instance'" in e for e in errors)
    assert any("SealedSecret/kreo-oidc" in e and "encryptedDate" in e for e in errors)
    assert any("Certificate/kreo-redis-tls: spec.dnsNames" in e for e in errors)


def test_schema_rejects_a_kind_it_has_no_schema_for(check, docs):
    docs.append(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    )
    assert check.schema_errors(docs) == [
        "Widget/w: no schema for example.com/v1/Widget"
    ]


def test_cross_check_rejects_a_reference_to_no_sealed_key(check, docs):
    web = pod_spec(docs, "Deployment", "kreo-web")["containers"][0]
    ref = next(i for i in web["env"] if i["name"] == "EMAIL_HOST_PASSWORD")
    ref["valueFrom"]["secretKeyRef"]["key"] = "EMAIL_PASSWORD"
    worker = pod_spec(docs, "Deployment", "kreo-worker")
    worker["volumes"].append({"name": "x", "secret": {"secretName": "kreo-nowhere"}})
    errors = check.secret_errors(docs)
    assert (
        "Deployment/kreo-web container web env EMAIL_HOST_PASSWORD: secret "
        "'kreo-smtp' has no key 'EMAIL_PASSWORD'" in errors
    )
    assert (
        "Deployment/kreo-worker volume x: secret 'kreo-nowhere' is not a "
        "SealedSecret of the overlay" in errors
    )


def test_cross_check_rejects_a_plaintext_secret(check, docs):
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kreo-oops", "namespace": "kreo"},
            "stringData": {"password": "hunter2"},
        }
    )
    assert check.UNSEALED.format(where="Secret/kreo-oops") in check.secret_errors(docs)


def test_cross_check_rejects_a_workload_without_a_required_variable(check, docs):
    web = pod_spec(docs, "Deployment", "kreo-web")["containers"][0]
    web["env"] = [i for i in web["env"] if i["name"] != "DATABASE_URL"]
    # Single sign-on switched on for the backups worker without its secret:
    # the settings' own conditions apply.
    backups = pod_spec(docs, "Deployment", "kreo-worker-backups")["containers"][0]
    issuer = next(i for i in backups["env"] if i["name"] == "KREO_OIDC_ISSUER")
    issuer["value"] = "https://sso.example.com/realms/kreo"
    errors = check.environment_errors(docs)
    assert errors == [
        "Deployment/kreo-web container web: production settings refuse to start "
        "without DATABASE_URL",
        "Deployment/kreo-worker-backups container worker: production settings "
        "refuse to start without KREO_OIDC_CLIENT_SECRET",
    ]


def test_only_the_backups_worker_holds_the_backup_keys(check, docs):
    """The other workloads run with KREO_RUNS_BACKUPS=false and without the
    keys; handing one back its flag makes production refuse to start it."""
    for name in ("kreo-web", "kreo-worker", "kreo-beat"):
        env = pod_spec(docs, "Deployment", name)["containers"][0]["env"]
        names = {e["name"] for e in env}
        assert "BACKUP_ENCRYPTION_KEY" not in names, name
        flag = next(e for e in env if e["name"] == "KREO_RUNS_BACKUPS")
        assert flag["value"] == "false"
    web = pod_spec(docs, "Deployment", "kreo-web")["containers"][0]
    web["env"] = [e for e in web["env"] if e["name"] != "KREO_RUNS_BACKUPS"]
    assert check.environment_errors(docs) == [
        "Deployment/kreo-web container web: production settings refuse to start "
        "without BACKUP_ENCRYPTION_KEY, BACKUP_MANIFEST_KEY"
    ]


def test_cross_check_rejects_a_policy_port_no_pod_listens_on(check, docs):
    find(docs, "NetworkPolicy", "redis")["spec"]["ingress"][0]["ports"][0]["port"] = (
        6380
    )
    find(docs, "NetworkPolicy", "app-to-postgres")["spec"]["egress"][0]["ports"][0][
        "port"
    ] = 5433
    find(docs, "NetworkPolicy", "web-ingress")["spec"]["podSelector"] = {
        "matchLabels": {"app.kubernetes.io/component": "webb"}
    }
    errors = check.port_errors(docs)
    assert (
        "NetworkPolicy/redis ingress: port 6380 is not a container port of "
        "['StatefulSet/kreo-redis']" in errors
    )
    assert (
        "NetworkPolicy/app-to-postgres egress: port 5433 is not a container port "
        "of ['Cluster/kreo-db instances']" in errors
    )
    assert "NetworkPolicy/web-ingress: selects no pod" in errors


def test_cross_check_rejects_an_exposed_service(check, docs):
    find(docs, "Service", "kreo-redis")["spec"]["type"] = "NodePort"
    web = find(docs, "Service", "kreo-web")
    web["spec"]["type"] = "LoadBalancer"
    errors = check.port_errors(docs)
    assert check.EXPOSED.format(where="Service/kreo-web", type="LoadBalancer") in errors
    assert check.EXPOSED.format(where="Service/kreo-redis", type="NodePort") in errors


def test_cross_check_rejects_a_pod_that_is_not_locked_down(check, docs):
    beat = pod_spec(docs, "Deployment", "kreo-beat")
    beat["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    beat["containers"][0]["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    del beat["containers"][0]["resources"]["limits"]
    del beat["securityContext"]["seccompProfile"]
    assert check.hardening_errors(docs) == [
        "Deployment/kreo-beat: no RuntimeDefault seccomp profile",
        "Deployment/kreo-beat container beat: root filesystem writable",
        "Deployment/kreo-beat container beat: capabilities not all dropped",
        "Deployment/kreo-beat container beat: no resource limits",
    ]


@pytest.mark.timeout(900)
def test_checkov_fails_a_privileged_pod(check, docs):
    redis = find(docs, "StatefulSet", "kreo-redis")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "runAsUser": 0}
    report = check.checkov(docs)
    failed = {line.split()[0] for line in report["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_22"} <= failed  # privileged; writable root


# --- what the manifests promise ----------------------------------------------


def test_no_plaintext_secret_anywhere_in_the_tree():
    skip = {".git", ".venv", "node_modules", "var", "staticfiles"}
    offenders = []
    for path in ROOT.rglob("*"):
        if skip & set(path.relative_to(ROOT).parts) or path.suffix not in (
            ".yaml",
            ".yml",
            ".json",
        ):
            continue
        text = path.read_text(errors="replace")
        if re.search(r'^\s*"?kind"?\s*:\s*"?Secret"?\s*,?\s*$', text, re.MULTILINE):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("overlay", ["production", "production-de"])
def test_each_workload_gets_only_its_secrets(rendered, overlay):
    docs = rendered[overlay]
    web = pod_spec(docs, "Deployment", "kreo-web")["containers"][0]
    backups = pod_spec(docs, "Deployment", "kreo-worker-backups")["containers"][0]
    redis = pod_spec(docs, "StatefulSet", "kreo-redis")["containers"][0]
    migrate = pod_spec(docs, "Job", "kreo-migrate")["containers"][0]
    others = [
        pod_spec(docs, "Deployment", name)["containers"][0]
        for name in ("kreo-worker", "kreo-beat")
    ]
    # web: never the backup keys nor an age identity.
    assert "kreo-backup-keys" not in secret_names(web)
    assert not {"BACKUP_ENCRYPTION_KEY", "BACKUP_MANIFEST_KEY"} & env_names(web)
    assert not any("AGE_IDENTITY" in name for name in env_names(web))
    # backups worker: the keys, never the OIDC client secret, SSO off.
    assert "kreo-backup-keys" in secret_names(backups)
    assert "kreo-oidc" not in secret_names(backups)
    assert {"name": "KREO_OIDC_ISSUER", "value": ""} in backups["env"]
    # only web has the OIDC secret; only migrate the owner role.
    assert all("kreo-oidc" not in secret_names(c) for c in [*others, migrate])
    assert "kreo-db-owner" in secret_names(migrate)
    assert all("kreo-db-owner" not in secret_names(c) for c in [web, backups, *others])
    assert secret_names(redis) == {"kreo-redis-server"}
    for container in [web, backups, migrate, *others]:
        assert not container.get("envFrom", [{}])[0].get("secretRef")


@pytest.mark.parametrize("overlay", ["production", "production-de"])
def test_workload_shapes(rendered, overlay):
    docs = rendered[overlay]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    beat = find(docs, "Deployment", "kreo-beat")["spec"]
    assert (beat["replicas"], beat["strategy"]["type"]) == (1, "Recreate")
    backups = find(docs, "Deployment", "kreo-worker-backups")["spec"]
    assert (backups["replicas"], backups["strategy"]["type"]) == (1, "Recreate")
    mounts = {
        m["name"]: m["mountPath"]
        for m in backups["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts["backup-copy1"] == config["BACKUP_COPY1_DIR"]
    assert mounts["backup-copy2"] == config["BACKUP_COPY2_DIR"]
    classes = {
        find(docs, "PersistentVolumeClaim", name)["spec"]["storageClassName"]
        for name in ("kreo-backup-copy1", "kreo-backup-copy2")
    }
    assert len(classes) == 2
    web = find(docs, "Deployment", "kreo-web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == [
        "gunicorn",
        "-c",
        "deploy/gunicorn/gunicorn.conf.py",
    ]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    host = container["readinessProbe"]["httpGet"]["httpHeaders"][0]["value"]
    assert host in config["DJANGO_ALLOWED_HOSTS"].split(",")
    annotation = web["spec"]["template"]["metadata"]["annotations"][
        "ad.datadoghq.com/web.checks"
    ]
    assert "/metrics" in annotation
    assert find(docs, "HorizontalPodAutoscaler", "kreo-web")["spec"]["minReplicas"] >= 2
    assert find(docs, "PodDisruptionBudget", "kreo-web")["spec"]["minAvailable"] == 1
    cluster = find(docs, "Cluster", "kreo-db")["spec"]
    assert cluster["instances"] == 3
    assert "hostnossl all all 0.0.0.0/0 reject" in cluster["postgresql"]["pg_hba"]
    assert cluster["bootstrap"]["initdb"]["owner"] == "kreo_owner"
    assert [r["name"] for r in cluster["managed"]["roles"]] == [
        "kreo_owner",
        "kreo_app",
        "kreo_purge",
    ]
    # Only the worker (its audit archive) holds the purge role's URL; the
    # migration names both roles so that it applies their audit grants.
    readers = {
        name
        for (kind, name) in (
            ("Deployment", "kreo-web"),
            ("Deployment", "kreo-worker"),
            ("Deployment", "kreo-worker-backups"),
            ("Deployment", "kreo-beat"),
            ("Job", "kreo-migrate"),
        )
        for container in pod_spec(docs, kind, name)["containers"]
        for e in container.get("env", [])
        if (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name")
        == "kreo-db-purge"
    }
    assert readers == {"kreo-worker"}
    migrate = {
        e["name"]: e.get("value")
        for e in pod_spec(docs, "Job", "kreo-migrate")["containers"][0]["env"]
    }
    assert (migrate["KREO_DB_APP_ROLE"], migrate["KREO_DB_PURGE_ROLE"]) == (
        "kreo_app",
        "kreo_purge",
    )
    redis = find(docs, "StatefulSet", "kreo-redis")["spec"]["template"]["spec"]
    command = " ".join(redis["containers"][0]["command"])
    assert "--port 0 --tls-port 6379" in command and "requirepass" in command
    policies = {
        d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"
    }
    assert policies["default-deny"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }


def test_the_overlays_differ_where_the_regions_do(rendered):
    def facts(docs):
        config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
        return (
            config["AWS_S3_ENDPOINT_URL"],
            config["AWS_S3_REGION_NAME"],
            find(docs, "Ingress", "kreo")["spec"]["ingressClassName"],
        )

    uk, de = facts(rendered["production"]), facts(rendered["production-de"])
    assert uk == ("https://s3.eu-west-2.amazonaws.com", "eu-west-2", "nginx")
    assert de[1] == "fsn1" and de[0].startswith("https://fsn1.")
    assert de[2] != uk[2]


def test_every_queue_the_app_sends_to_has_a_worker(rendered, tmp_path):
    queues = set()
    for doc in rendered["production"]:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for arg in container.get("command", []):
                if arg.startswith("--queues="):
                    queues |= set(arg.removeprefix("--queues=").split(","))
    # The app's own settings (the test settings give each run a queue of its
    # own): its default queue and every queue it routes a task to.
    script = (
        "import json, kreo.settings.base as s; print(json.dumps(["
        "getattr(s, 'CELERY_TASK_DEFAULT_QUEUE', 'celery'),"
        "[r['queue'] for r in"
        " (getattr(s, 'CELERY_TASK_ROUTES', None) or {}).values()]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "KREO_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    default, routed = json.loads(result.stdout)
    assert {default, *routed} <= queues


# --- seal.sh -----------------------------------------------------------------


@pytest.fixture
def k8s_copy(tmp_path):
    target = tmp_path / "k8s"
    shutil.copytree(K8S, target)
    return target


@pytest.mark.parametrize("overlay", ["production", "production-de"])
def test_committed_sealed_secrets_are_what_seal_sh_makes(k8s_copy, overlay):
    subprocess.run(
        ["bash", str(k8s_copy / "seal.sh"), "--placeholders", overlay],
        check=True,
        capture_output=True,
    )
    made = (k8s_copy / "overlays" / overlay / "sealedsecrets.yaml").read_text()
    assert made == (K8S / "overlays" / overlay / "sealedsecrets.yaml").read_text()


ENV = {
    "DJANGO_SECRET_KEY": "s" * 50,
    "KREO_KEYRING": "k1:" + base64.b64encode(b"k" * 32).decode(),
    "KREO_ACTIVE_KEY_ID": "k1",
    "KREO_ALTCHA_HMAC_KEY": "a" * 48,
    "AUDIT_SIGNING_KEY": "sig" * 16,
    "AUDIT_ARCHIVE_KEY": "arc" * 16,
    "AUDIT_EVENT_KEY": "e1:" + "evt" * 16,
    "BACKUP_AGE_RECIPIENT": "age1placeholder",
    "AWS_ACCESS_KEY_ID": "AKIATEST",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "POSTGRES_PASSWORD": "ownerpw",
    "POSTGRES_APP_PASSWORD": "apppw",
    "REDIS_PASSWORD": "redispw",
    "KREO_OIDC_CLIENT_SECRET": "oidc-secret",
    "EMAIL_HOST_PASSWORD": "smtp-secret",
    "BACKUP_ENCRYPTION_KEY": "backup-key-a",
    "BACKUP_MANIFEST_KEY": "manifest-key",
    "POSTGRES_PURGE_PASSWORD": "purgepw",
}


@pytest.fixture
def stand_in_kubeseal(tmp_path):
    """kubeseal needs a cluster's controller: a stand-in that copies the
    Secret it is given, so the test sees what would have been sealed."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "kubeseal").write_text('#!/bin/sh\necho "args: $*" >&2\ncat\n')
    (folder / "kubeseal").chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def seal(k8s_copy, env_file, environ):
    return subprocess.run(
        ["bash", str(k8s_copy / "seal.sh"), "production", str(env_file)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )


def test_seal_sh_splits_the_env_per_workload(
    k8s_copy, tmp_path, stand_in_kubeseal, rendered
):
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    result = seal(k8s_copy, env_file, stand_in_kubeseal)
    assert result.returncode == 0, result.stderr
    # No value on kubeseal's command line (where ps would show it).
    assert not any(value in result.stderr for value in ENV.values())
    made = {
        doc["metadata"]["name"]: {
            key: base64.b64decode(value).decode() for key, value in doc["data"].items()
        }
        for doc in yaml.safe_load_all(
            (k8s_copy / "overlays" / "production" / "sealedsecrets.yaml").read_text()
        )
        if doc
    }
    committed = {
        doc["metadata"]["name"]: set(doc["spec"]["encryptedData"])
        for doc in rendered["production"]
        if doc["kind"] == "SealedSecret"
    }
    assert {name: set(data) for name, data in made.items()} == committed
    assert made["kreo-oidc"] == {"KREO_OIDC_CLIENT_SECRET": "oidc-secret"}
    assert made["kreo-backup-keys"] == {
        "BACKUP_ENCRYPTION_KEY": "backup-key-a",
        "BACKUP_MANIFEST_KEY": "manifest-key",
    }
    # TLS forms, pointing at the CA files the pods mount.
    assert made["kreo-db-app"]["DATABASE_URL"] == (
        "postgres://kreo_app:apppw@kreo-db-rw.kreo.svc:5432/kreo"
        "?sslmode=verify-full&sslrootcert=/etc/kreo/pg-ca/ca.crt"
    )
    assert made["kreo-db-purge"]["DATABASE_URL"].startswith(
        "postgres://kreo_purge:purgepw@kreo-db-rw.kreo.svc:5432/kreo?sslmode=verify-full"
    )
    assert made["kreo-db-owner"]["username"] == "kreo_owner"
    assert made["kreo-db-owner"]["DATABASE_URL"].startswith(
        "postgres://kreo_owner:ownerpw@"
    )
    assert made["kreo-redis-client"]["REDIS_URL"] == (
        "rediss://:redispw@kreo-redis.kreo.svc:6379/0"
    )
    web = pod_spec(rendered["production"], "Deployment", "kreo-web")["containers"][0]
    mounts = {m["mountPath"] for m in web["volumeMounts"]}
    assert {"/etc/kreo/pg-ca", "/etc/kreo/redis-ca"} <= mounts
    env = {e["name"]: e.get("value") for e in web["env"]}
    assert env["REDIS_CA_FILE"] == "/etc/kreo/redis-ca/ca.crt"


def test_seal_sh_refuses_an_empty_value_and_keeps_the_file(
    k8s_copy, tmp_path, stand_in_kubeseal
):
    target = k8s_copy / "overlays" / "production" / "sealedsecrets.yaml"
    before = target.read_text()
    env_file = tmp_path / ".env"
    env_file.write_text(
        "".join(
            f"{k}={'' if k == 'BACKUP_MANIFEST_KEY' else v}\n" for k, v in ENV.items()
        )
    )
    result = seal(k8s_copy, env_file, stand_in_kubeseal)
    assert result.returncode == 1
    assert (
        f"seal.sh: BACKUP_MANIFEST_KEY is empty or missing in {env_file}"
        in result.stderr
    )
    assert target.read_text() == before
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []
