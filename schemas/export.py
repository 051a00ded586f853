"""Write the JSON Schema exports of the contracts: ``python -m schemas.export``.

The committed files under ``schemas/json/`` are what other tools (and CI of a
data provider) validate against; ``tests/schemas/test_export.py`` fails when they
drift from the pydantic models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.config import EvaluationConfig
from schemas.rows import AvainRow, KelaRow
from schemas.rules import RULES

JSON_DIR = Path(__file__).parent / "json"


def schemas() -> dict[str, dict[str, Any]]:
    """Every exported schema by file name."""
    rules = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "kokeilu contract rules",
        "description": "Stable rule codes: scope, extracts, column, requirement.",
        "rules": [
            {"code": r.code, "scope": r.scope, "extracts": list(r.extracts), "column": r.column,
             "description": r.description}
            for r in RULES.values()
        ],
    }
    return {
        "kela_row.schema.json": _with_dialect(KelaRow.model_json_schema()),
        "avain_row.schema.json": _with_dialect(AvainRow.model_json_schema()),
        "evaluation_config.schema.json": _with_dialect(EvaluationConfig.model_json_schema()),
        "rules.json": rules,
    }


def _with_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(schema: dict[str, Any]) -> str:
    """The committed text of one schema (stable key order, trailing newline)."""
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> None:
    """Write every schema under ``schemas/json/``."""
    JSON_DIR.mkdir(exist_ok=True)
    for name, schema in schemas().items():
        (JSON_DIR / name).write_text(render(schema), encoding="utf-8")
        print(f"wrote {JSON_DIR / name}")


if __name__ == "__main__":
    main()
