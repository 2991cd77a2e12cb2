"""Check the Kubernetes manifests (deploy/k8s) offline: no cluster needed.

Usage: python .ci/k8s_check.py [OVERLAY ...]   (default: every overlay)

For each overlay:
1. ``kubectl kustomize`` renders it (kubectl 1.32 with its kustomize).
2. Every object validates, strictly (an unknown field is an error), against
   the Kubernetes 1.32 JSON schemas (PyPI ``kubernetes-validate``) or, for
   the operators' kinds, the CRD schemas committed in deploy/k8s/schemas.
3. Cross-references no schema can express (``cross_check_errors``): every
   variable production settings refuse to start without reaches each app
   container; every secret reference resolves to a key of a SealedSecret
   (or a secret an operator makes: CloudNativePG's CA, cert-manager's
   certificates); no plaintext Secret; every NetworkPolicy port is a port
   of the pods it selects or sends to; no LoadBalancer or NodePort Service;
   every pod locked down (non-root, read-only root, no capabilities,
   seccomp, requests and limits).
4. checkov (its own virtualenv, cached outside the tree: its pins clash with
   the project's) passes with no failed check; a skip is a
   ``checkov.io/skipN: ID=reason`` annotation next to the object.

Exit status 0 when every overlay is good, 1 with one line per problem.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
SCHEMAS = K8S / "schemas"
KUBERNETES_VERSION = "1.32"
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "kreo"
    / f"checkov-{CHECKOV_VERSION}"
)
APP_IMAGE = "registry.example.com/kreo/app"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}
# Pods an operator makes from a resource of the tree: their labels and ports
# (CloudNativePG instances: PostgreSQL, the instance manager, the exporter).
CNPG_PORTS = {"postgresql": 5432, "status": 8000, "metrics": 9187}
# The production settings' refusal (kreo/settings/production.py).
REFUSAL = re.compile(r"refuse to start: set (.+) in the environment")
# Issue #15 keeps the backup keys on the backups worker alone; production
# settings still demand them of every process. Until they ask for them only
# where backups run, these are the known gaps (README "Kubernetes").

NO_SCHEMA = "{where}: no schema for {api}/{kind}"
SCHEMA_ERROR = "{where}: {path}: {message}"
UNSEALED = "{where}: a plaintext Secret; seal it (deploy/k8s/seal.sh)"
NOT_SEALED = "{where}: secret {name!r} is not a SealedSecret of the overlay"
MISSING_KEY = "{where}: secret {name!r} has no key {key!r}"
MISSING_ENV = "{where}: production settings refuse to start without {names}"
BAD_PORT = "{where}: port {port} is not a container port of {whom}"
SELECTS_NOTHING = "{where}: selects no pod"
EXPOSED = "{where}: Service type {type} (only the ingress is reachable from outside)"
UNSAFE = "{where}: {problem}"


def render(overlay: str | Path) -> list[dict]:
    """The overlay as ``kubectl kustomize`` renders it, one dict per object."""
    path = overlay if isinstance(overlay, Path) else K8S / "overlays" / overlay
    result = subprocess.run(  # noqa: S603 - fixed arguments
        ["kubectl", "kustomize", str(path)],  # noqa: S607 - kubectl from PATH, as CI's
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, lower-case kind) -> schema, from schemas/<group>_<kind>_<v>.json."""
    schemas = {}
    for path in SCHEMAS.glob("*.json"):
        group, kind, version = path.stem.rsplit("_", 2)
        schemas[(f"{group}/{version}", kind)] = json.loads(path.read_text())
    return schemas


def schema_errors(docs: list[dict]) -> list[str]:
    """Strict validation of every object: built-in kinds and the CRDs."""
    import kubernetes_validate
    from jsonschema import Draft7Validator

    crds = crd_schemas()
    errors = []
    for doc in docs:
        where, key = name_of(doc), (doc.get("apiVersion"), doc.get("kind"))
        if (key[0], str(key[1]).lower()) in crds:
            schema = crds[(key[0], str(key[1]).lower())]
            for error in sorted(Draft7Validator(schema).iter_errors(doc), key=str):
                path = ".".join(str(p) for p in error.absolute_path)
                errors.append(
                    SCHEMA_ERROR.format(where=where, path=path, message=error.message)
                )
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(NO_SCHEMA.format(where=where, api=key[0], kind=key[1]))
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(
                SCHEMA_ERROR.format(where=where, path=path, message=error.message)
            )
    return errors


def pod_templates(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, pod metadata, pod spec) of every workload."""
    pods = []
    for doc in docs:
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = doc["spec"]
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        template = spec["template"]
        pods.append((name_of(doc), template.get("metadata", {}), template["spec"]))
    return pods


def operator_pods(docs: list[dict]) -> list[tuple[str, dict, dict[str, int]]]:
    """(where, labels, named ports) of pods an operator makes from the tree."""
    return [
        (
            f"{name_of(doc)} instances",
            {"cnpg.io/cluster": doc["metadata"]["name"], "cnpg.io/podRole": "instance"},
            {**CNPG_PORTS, **{str(port): port for port in CNPG_PORTS.values()}},
        )
        for doc in docs
        if doc.get("kind") == "Cluster"
        and doc["apiVersion"].startswith("postgresql.cnpg.io/")
    ]


def all_pods(docs: list[dict]) -> list[tuple[str, dict, dict[str, int]]]:
    """(where, labels, {port name or number: number}) of every pod."""
    pods = []
    for where, metadata, spec in pod_templates(docs):
        ports: dict[str, int] = {}
        for container in spec.get("containers", []):
            for port in container.get("ports", []):
                ports[str(port["containerPort"])] = port["containerPort"]
                if port.get("name"):
                    ports[port["name"]] = port["containerPort"]
        pods.append((where, metadata.get("labels", {}), ports))
    return pods + operator_pods(docs)


def selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector against a pod's labels (an empty one selects all)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def sealed_keys(docs: list[dict]) -> dict[str, set[str]]:
    """Secret name -> its keys, for every SealedSecret of the overlay."""
    return {
        doc["spec"].get("template", {}).get("metadata", {}).get("name")
        or doc["metadata"]["name"]: set(doc["spec"].get("encryptedData", {}))
        for doc in docs
        if doc.get("kind") == "SealedSecret"
    }


def operator_secrets(docs: list[dict]) -> dict[str, set[str]]:
    """Secrets the operators make: cert-manager's and CloudNativePG's CA."""
    made = {}
    for doc in docs:
        if doc.get("kind") == "Certificate":
            made[doc["spec"]["secretName"]] = {"ca.crt", "tls.crt", "tls.key"}
        elif doc.get("kind") == "Cluster" and doc["apiVersion"].startswith(
            "postgresql.cnpg.io/"
        ):
            made[f"{doc['metadata']['name']}-ca"] = {"ca.crt"}
        elif doc.get("kind") == "Ingress" and doc["metadata"].get(
            "annotations", {}
        ).get("cert-manager.io/cluster-issuer"):
            for tls in doc["spec"].get("tls", []):
                made[tls["secretName"]] = {"ca.crt", "tls.crt", "tls.key"}
    return made


def secret_errors(docs: list[dict]) -> list[str]:
    """No plaintext Secret; every reference to a secret resolves to its key."""
    errors = [
        UNSEALED.format(where=name_of(doc))
        for doc in docs
        if doc.get("kind") == "Secret"
    ]
    sealed = sealed_keys(docs)
    known = {**operator_secrets(docs), **sealed}

    def check(where: str, name: str, keys=(), pool=None) -> None:
        pool = known if pool is None else pool
        if name not in pool:
            errors.append(NOT_SEALED.format(where=where, name=name))
            return
        errors.extend(
            MISSING_KEY.format(where=where, name=name, key=key)
            for key in keys
            if key not in pool[name]
        )

    for where, _, spec in pod_templates(docs):
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            at = f"{where} container {container['name']}"
            for item in container.get("env", []):
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    check(f"{at} env {item['name']}", ref["name"], [ref["key"]], sealed)
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    check(f"{at} envFrom", source["secretRef"]["name"], (), sealed)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                keys = [item["key"] for item in volume["secret"].get("items", [])]
                check(
                    f"{where} volume {volume['name']}",
                    volume["secret"]["secretName"],
                    keys,
                )
    for doc in docs:
        if doc.get("kind") == "Cluster" and doc["apiVersion"].startswith(
            "postgresql.cnpg.io/"
        ):
            where = name_of(doc)
            owner = doc["spec"].get("bootstrap", {}).get("initdb", {}).get("secret")
            if owner:
                check(f"{where} owner", owner["name"], ["username", "password"], sealed)
            for role in doc["spec"].get("managed", {}).get("roles", []):
                if role.get("passwordSecret"):
                    check(
                        f"{where} role {role['name']}",
                        role["passwordSecret"]["name"],
                        ["username", "password"],
                        sealed,
                    )
        if doc.get("kind") == "Ingress":
            ref = (
                doc["metadata"]
                .get("annotations", {})
                .get("nginx.ingress.kubernetes.io/proxy-ssl-secret")
            )
            if ref:
                check(
                    f"{name_of(doc)} proxy-ssl-secret", ref.split("/")[-1], ["ca.crt"]
                )
    return errors


def container_environment(docs: list[dict], container: dict) -> dict[str, str]:
    """The container's variables: literal values as written, secrets as a stand-in."""
    maps = {
        doc["metadata"]["name"]: doc.get("data", {})
        for doc in docs
        if doc.get("kind") == "ConfigMap"
    }
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(maps.get(source["configMapRef"]["name"], {}))
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            for key in sealed_keys(docs).get(name, ()):
                environment[key] = f"sealed:{name}"
    for item in container.get("env", []):
        if "value" in item:
            environment[item["name"]] = str(item["value"])
        elif "secretKeyRef" in (item.get("valueFrom") or {}):
            environment[item["name"]] = (
                f"sealed:{item['valueFrom']['secretKeyRef']['name']}"
            )
        elif item.get("valueFrom"):
            environment[item["name"]] = "from-the-pod"
    return environment


def refused(environment: dict[str, str]) -> set[str]:
    """The variables production settings refuse to start without, given these.

    Runs the settings' own refusal (a missing or empty required variable
    stops the import with a message naming each): whatever conditions it
    applies (the CAPTCHA, SSO on or off, the ledger bucket) apply here too.
    """
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-c", "import kreo.settings.production"],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = REFUSAL.search(result.stderr)
    return {name.strip() for name in match.group(1).split(",")} if match else set()


def environment_errors(docs: list[dict]) -> list[str]:
    """Every app container has every variable production requires of it."""
    errors = []
    for where, _, spec in pod_templates(docs):
        for container in spec.get("containers", []):
            if not container["image"].startswith(APP_IMAGE):
                continue
            missing = refused(container_environment(docs, container))
            if missing:
                errors.append(
                    MISSING_ENV.format(
                        where=f"{where} container {container['name']}",
                        names=", ".join(sorted(missing)),
                    )
                )
    return errors


def port_errors(docs: list[dict]) -> list[str]:
    """NetworkPolicy ports are ports of the pods they concern; no exposed Service."""
    errors = []
    pods = all_pods(docs)

    def ports_of(selector: dict | None) -> tuple[list[str], dict[str, int]]:
        chosen = [(w, p) for w, labels, p in pods if selects(selector, labels)]
        merged: dict[str, int] = {}
        for _, ports in chosen:
            merged.update(ports)
        return [w for w, _ in chosen], merged

    for doc in docs:
        where = name_of(doc)
        if doc.get("kind") == "Service":
            kind = doc["spec"].get("type", "ClusterIP")
            if kind in ("LoadBalancer", "NodePort"):
                errors.append(EXPOSED.format(where=where, type=kind))
            whom, ports = ports_of({"matchLabels": doc["spec"].get("selector", {})})
            if not whom:
                errors.append(SELECTS_NOTHING.format(where=where))
            for port in doc["spec"].get("ports", []):
                target = str(port.get("targetPort", port["port"]))
                if whom and target not in ports:
                    errors.append(BAD_PORT.format(where=where, port=target, whom=whom))
        if doc.get("kind") != "NetworkPolicy":
            continue
        selected, own_ports = ports_of(doc["spec"].get("podSelector"))
        if not selected:
            errors.append(SELECTS_NOTHING.format(where=where))
        for rule in doc["spec"].get("ingress") or []:
            for port in rule.get("ports") or []:
                if str(port["port"]) not in own_ports:
                    errors.append(
                        BAD_PORT.format(
                            where=f"{where} ingress", port=port["port"], whom=selected
                        )
                    )
        for rule in doc["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                # Only pods of this namespace are known here; the cluster DNS,
                # other namespaces and addresses outside are not.
                if "podSelector" not in peer or "namespaceSelector" in peer:
                    continue
                peers, peer_ports = ports_of(peer["podSelector"])
                if not peers:
                    errors.append(SELECTS_NOTHING.format(where=f"{where} egress peer"))
                for port in rule.get("ports") or []:
                    if str(port["port"]) not in peer_ports:
                        errors.append(
                            BAD_PORT.format(
                                where=f"{where} egress", port=port["port"], whom=peers
                            )
                        )
    return errors


def hardening_errors(docs: list[dict]) -> list[str]:
    """Every pod: non-root, read-only root, no capabilities, seccomp, limits."""
    errors = []
    for where, _, spec in pod_templates(docs):
        pod = spec.get("securityContext", {})
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(
                UNSAFE.format(where=where, problem="no RuntimeDefault seccomp profile")
            )
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(UNSAFE.format(where=where, problem="mounts an API token"))
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            at = f"{where} container {container['name']}"
            context = container.get("securityContext", {})
            problems = {
                "may run as root": not (
                    context.get("runAsNonRoot") or pod.get("runAsNonRoot")
                ),
                "root filesystem writable": context.get("readOnlyRootFilesystem")
                is not True,
                "privilege escalation allowed": context.get("allowPrivilegeEscalation")
                is not False,
                "capabilities not all dropped": context.get("capabilities", {}).get(
                    "drop"
                )
                != ["ALL"],
                "no resource requests": not container.get("resources", {}).get(
                    "requests"
                ),
                "no resource limits": not container.get("resources", {}).get("limits"),
            }
            errors.extend(
                UNSAFE.format(where=at, problem=p) for p, bad in problems.items() if bad
            )
    return errors


def cross_check_errors(
    docs: list[dict],
) -> list[str]:
    return (
        secret_errors(docs)
        + environment_errors(docs)
        + port_errors(docs)
        + hardening_errors(docs)
    )


def ensure_checkov() -> Path:
    """checkov in its own virtualenv, made once and kept in the user's cache."""
    binary = CHECKOV_VENV / "bin" / "checkov"
    if not binary.exists():
        pip = str(CHECKOV_VENV / "bin" / "pip")
        for step in (
            [sys.executable, "-m", "venv", str(CHECKOV_VENV)],
            [pip, "install", "--quiet", f"checkov=={CHECKOV_VERSION}"],
        ):
            result = subprocess.run(  # noqa: S603 - fixed arguments
                step, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"installing checkov failed: {' '.join(step)}: "
                    f"{result.stderr.strip()[-2000:]}"
                )
    return binary


def checkov(docs: list[dict]) -> dict:
    """checkov's summary of the rendered objects (passed, failed, skipped, the
    failed checks)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rendered.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [
                str(ensure_checkov()),
                "--quiet",
                "--compact",
                "--framework",
                "kubernetes",
                "--output",
                "json",
                "--file",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "BC_SKIP_MAPPING": "TRUE",
                "CHECKOV_NO_OUTPUT_IN_COLOR": "1",
            },
        )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report.get("results", {}).get("failed_checks", [])
    ]
    summary = report.get("summary", {})
    return {
        "passed": summary.get("passed", 0),
        "failed": summary.get("failed", 0),
        "skipped": summary.get("skipped", 0),
        "failed_checks": failed,
    }


def main(argv: list[str]) -> int:
    problems = 0
    out = sys.stdout.write
    for overlay in argv or OVERLAYS:
        docs = render(overlay)
        out(f"== {overlay}: {len(docs)} objects rendered\n")
        errors = schema_errors(docs)
        out(f"   schemas, Kubernetes {KUBERNETES_VERSION} strict + CRDs: ")
        out(f"{len(docs) - len({e.split(':')[0] for e in errors})} valid, ")
        out(f"{len(errors)} error(s)\n")
        cross = cross_check_errors(docs)
        out(f"   cross-check: {len(cross)} error(s)\n")
        report = checkov(copy.deepcopy(docs))
        out(
            f"   checkov {CHECKOV_VERSION}: passed {report['passed']}, "
            f"failed {report['failed']}, skipped {report['skipped']} (reasons: "
            "checkov.io/skip annotations)\n"
        )
        for line in errors + cross + report["failed_checks"]:
            out(f"   {line}\n")
        problems += len(errors) + len(cross) + report["failed"]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
