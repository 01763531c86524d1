"""CloudNativePG's CRD schemas as validators of the objects Howdah renders (test data kept outside the project).

The CRDs of the operator versions Howdah supports sit beside the project (``../shared/cnpg-crds/<tag>/``, or
where ``HOWDAH_CNPG_CRDS`` points). :func:`problems` checks an object against its kind's OpenAPI v3 schema as an
API server applying with ``fieldValidation=Strict`` would: types, required fields, enums, patterns, bounds,
int-or-string, and every field unknown to the schema is an error (a real server would prune it silently without
Strict). The CEL rules (``x-kubernetes-validations``) are not evaluated; the operator's admission webhook is
mirrored by :mod:`howdah.providers._cnpg_admission` (tested in ``tests/unit/test_cnpg_admission.py``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(os.environ.get("HOWDAH_CNPG_CRDS") or Path(__file__).resolve().parents[2] / "shared" / "cnpg-crds")
VERSIONS = ("v1.26.0", "v1.30.0")
PLURALS = {
    "Cluster": "clusters", "Pooler": "poolers", "Database": "databases", "Backup": "backups",
    "ScheduledBackup": "scheduledbackups",
}  # fmt: skip
MISSING = f"CloudNativePG's CRDs are not in {CRDS} (set HOWDAH_CNPG_CRDS to the folder holding {VERSIONS})"


def available() -> bool:
    return all((CRDS / version / f"postgresql.cnpg.io_{PLURALS['Cluster']}.yaml").is_file() for version in VERSIONS)


def strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON Schema that reads ``schema`` (a CRD's structural schema) as a strict API server does."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = strict(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [strict(sub) for sub in value]
        elif not key.startswith("x-kubernetes-") and key not in ("nullable", "format"):
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False  # an unknown field: Strict refuses it
    return out


@functools.cache
def _validator(version: str, kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((CRDS / version / f"postgresql.cnpg.io_{PLURALS[kind]}.yaml").read_text(encoding="utf-8"))
    served = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = strict(served["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def problems(obj: Mapping[str, Any], version: str) -> list[str]:
    """What an API server with CloudNativePG ``version``'s CRDs refuses in ``obj`` (empty: it is accepted)."""
    validator = _validator(version, str(obj["kind"]))
    found = validator.iter_errors(dict(obj))
    return sorted(f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}" for error in found)
