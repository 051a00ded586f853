"""Row-level pydantic models of both extracts, built from :mod:`schemas.columns`.

A model validates one raw row (a mapping of column name to the delivered text or
Parquet value) and either returns the typed row or raises a
:class:`pydantic.ValidationError` whose error ``type`` is the contract's rule code.
The loader checks whole files in vectorised form; these models are the reference
that explains a rejected row (``explain``).

Validation needs the context of the row's file (its month, municipality, year)
and the evaluation (known municipalities); pass a :class:`CheckContext` as the
pydantic validation context.

Examples
--------
>>> ctx = CheckContext(municipalities=frozenset({"837"}), file_month="201803")
>>> row = {"hetu": "010190-900P", "kotitalous_id": "K1", "kuntanumero": "837",
...        "tilastokuukausi": "201803", "kotitaloustyyppi": "1", "tyomarkkina_asema": "3",
...        "perusosa_eur": "491,21", "myonnetty_eur": "350,00",
...        "perusosan_alennus_pct": "0", "ohjaus_sosiaalityohon": "0"}
>>> KelaRow.model_validate(row, context=ctx).myonnetty_eur
Decimal('350.00')
>>> explain("kela", {**row, "kuntanumero": "9x1"}, ctx)
['kuntanumero_format']
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.columns import AVAIN_COLUMNS, KELA_COLUMNS, CheckContext, Column, RuleBroken, check_value, json_schema_of
from schemas.rules import PRECEDENCE

__all__ = ["AvainRow", "CheckContext", "KelaRow", "explain", "ROW_MODELS"]


def _validator(col: Column) -> BeforeValidator:
    def validate(raw: Any, info: ValidationInfo) -> Any:
        ctx = info.context
        if not isinstance(ctx, CheckContext):
            raise PydanticCustomError("context_missing", "validate with context=CheckContext(...)")
        try:
            return check_value(col, raw, ctx)
        except RuleBroken as broken:
            raise PydanticCustomError(broken.code, broken.detail) from None

    return BeforeValidator(validate)


_PY_TYPES: dict[str, Any] = {"int": int, "decimal": Decimal, "date": dt.date}


def _fields(columns: tuple[Column, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for col in columns:
        py_type = _PY_TYPES.get(col.kind, str)
        if not col.required:
            py_type = py_type | None
        annotated = Annotated[py_type, _validator(col), WithJsonSchema(json_schema_of(col))]
        fields[col.name] = (annotated, ... if col.required else None)
    return fields


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)


class _AvainBase(_Row):
    @model_validator(mode="after")
    def _goal_score_follows_assessment_round(self) -> _AvainBase:
        kerta = getattr(self, "arviointikerta")
        score = getattr(self, "tavoitteen_saavutus")
        if kerta == 0 and score is not None:
            raise PydanticCustomError(
                "tavoitteen_saavutus_at_baseline",
                "tavoitteen_saavutus {score} at baseline (arviointikerta 0): expected empty",
                {"score": score},
            )
        if kerta > 0 and score is None:
            raise PydanticCustomError(
                "tavoitteen_saavutus_missing",
                "tavoitteen_saavutus empty at review {kerta}: expected 1-5",
                {"kerta": kerta},
            )
        return self


KelaRow: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "KelaRow",
    __base__=_Row,
    __doc__="One row of a Kela-style basic income support extract (person × benefit month).",
    **_fields(KELA_COLUMNS),
)
AvainRow: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "AvainRow",
    __base__=_AvainBase,
    __doc__="One row of an AVAIN-style assessment extract (assessment × goal).",
    **_fields(AVAIN_COLUMNS),
)

ROW_MODELS: dict[str, type[BaseModel]] = {"kela": KelaRow, "avain": AvainRow}


def explain(extract: Literal["kela", "avain"], raw: dict[str, Any], ctx: CheckContext) -> list[str]:
    """Every rule code one raw row breaks, first-recorded first; empty if the row is valid."""
    try:
        ROW_MODELS[extract].model_validate(raw, context=ctx)
    except ValidationError as err:
        codes = {f"{e['loc'][0]}_missing" if e["type"] == "missing" else e["type"] for e in err.errors()}
        return sorted(codes, key=lambda c: PRECEDENCE.get(c, len(PRECEDENCE)))
    return []
