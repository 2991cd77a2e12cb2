"""Turn a CustomResourceDefinition into the strict JSON schema CI checks with.

Usage: python crd2schema.py CRD.yaml [...] (writes <group>_<kind>_<version>.json
here). Strict as kubeconform's openapi2jsonschema: an object that lists its
properties and does not preserve unknown fields gets additionalProperties
false, so a misspelt field is an error, not silently dropped by the API server.
"""

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def strict(node):
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def convert(path: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's ObjectMeta, checked by it.
            schema["properties"]["metadata"] = {"type": "object"}
            schema["required"] = sorted(
                {*schema.get("required", []), "apiVersion", "kind"}
            )
            out = HERE / f"{group}_{kind.lower()}_{version['name']}.json"
            out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            written.append(out)
    return written


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        for out in convert(Path(argument)):
            sys.stdout.write(out.name + "\n")
