"""The committed JSON Schema exports equal what the models export now."""

from __future__ import annotations

from schemas.export import JSON_DIR, render, schemas


def test_json_schemas_do_not_drift() -> None:
    drifted = [
        name for name, schema in schemas().items()
        if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text(encoding="utf-8") != render(schema)
    ]
    assert not drifted, f"run `python -m schemas.export` and commit: {drifted}"


def test_exports_carry_the_rule_codes() -> None:
    kela = schemas()["kela_row.schema.json"]
    assert "hetu_check_character" in kela["properties"]["hetu"]["x-rules"]
    assert kela["properties"]["perusosan_alennus_pct"]["enum"] == [0, 20, 40]
