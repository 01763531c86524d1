"""Golden files of rendered objects: compare, or rewrite them with ``HOWDAH_UPDATE_GOLDEN=1`` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

UPDATE = os.environ.get("HOWDAH_UPDATE_GOLDEN") == "1"


def check_golden(folder: Path, name: str, objects: list[dict[str, Any]]) -> None:
    """``objects`` as YAML documents must equal ``folder/name.yaml`` (written instead when updating)."""
    text = yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
    path = folder / f"{name}.yaml"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path.name} is missing; run with HOWDAH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{path.name} differs; if intended, regenerate with HOWDAH_UPDATE_GOLDEN=1"
