"""Every contract rule, with its stable code, in one place.

A rule code is a public interface: it appears in ``quarantine.*.rule``, in
``meta.validation_results`` and in the output of ``kokeilu validate``. Codes are
never renamed; a retired rule keeps its code reserved.

Rules come in three scopes:

``file``
    The file as a whole cannot be read as a delivery (name, encoding, header).
    Its rows are not loaded; ``kokeilu validate`` reports it on line 0 or 1.
``row``
    One row breaks a rule of one column (or of two columns together). The row
    goes to quarantine with the first rule it breaks, in the order listed here.
``set``
    A rule over several rows (a duplicated key, too many goals). Every row
    involved goes to quarantine.

When a row breaks several row rules, the rule listed first below is recorded
(``detail`` names the others), so that quarantine counts are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["file", "row", "set"]
Extract = Literal["kela", "avain"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One contract rule: its code, where it applies and what it requires."""

    code: str
    scope: Scope
    extracts: tuple[Extract, ...]
    column: str | None
    description: str


_BOTH: tuple[Extract, ...] = ("kela", "avain")
_KELA: tuple[Extract, ...] = ("kela",)
_AVAIN: tuple[Extract, ...] = ("avain",)

_RULES: tuple[Rule, ...] = (
    # --- file rules -----------------------------------------------------------
    Rule("file_name", "file", _BOTH, None,
         "file name is toimeentulotuki_YYYYMM.csv|parquet or avain_KKK_YYYY.csv|parquet"),
    Rule("file_unreadable", "file", _BOTH, None,
         "file can be opened and parsed as CSV (UTF-8, ';') or Parquet"),
    Rule("file_encoding", "file", _BOTH, None, "CSV file is valid UTF-8"),
    Rule("file_empty", "file", _BOTH, None, "file has a header row"),
    Rule("header_missing_column", "file", _BOTH, None, "every contract column is present"),
    Rule("header_duplicate_column", "file", _BOTH, None, "no column name appears twice"),
    Rule("parquet_column_type", "file", _BOTH, None,
         "Parquet columns have the contract's logical types"),
    Rule("file_no_rows", "file", _KELA, None,
         "a Kela-style month file has at least one data row (an empty file would empty its month)"),
    Rule("month_shrinks", "file", _KELA, None,
         "a re-delivered month keeps at least (1 - loading.max_month_shrink) of the valid rows it replaces"),
    # --- row rules: the record as a whole ------------------------------------
    Rule("row_malformed", "row", _BOTH, None,
         "row has as many fields as the header (not truncated, quotes balanced)"),
    # --- identity code ---------------------------------------------------------
    Rule("hetu_missing", "row", _BOTH, "hetu", "hetu is present"),
    Rule("hetu_format", "row", _BOTH, "hetu",
         "hetu is 11 characters DDMMYYCZZZQ: 6 digits, a sign, 3 digits, a check character"),
    Rule("hetu_century_sign", "row", _BOTH, "hetu",
         "century sign is one of + - A B C D E F U V W X Y"),
    Rule("hetu_date", "row", _BOTH, "hetu", "DDMMYY with the century is a real date"),
    Rule("hetu_individual_number", "row", _BOTH, "hetu",
         "individual number ZZZ is 002-999"),
    Rule("hetu_not_synthetic", "row", _BOTH, "hetu",
         "individual number is 900-999 (enforced while the evaluation accepts synthetic codes only)"),
    Rule("hetu_check_character", "row", _BOTH, "hetu",
         "check character = '0123456789ABCDEFHJKLMNPRSTUVWXY'[DDMMYYZZZ mod 31]"),
    # --- Kela-style columns ----------------------------------------------------
    Rule("kotitalous_id_missing", "row", _KELA, "kotitalous_id", "kotitalous_id is present"),
    Rule("kuntanumero_missing", "row", _BOTH, "kuntanumero", "kuntanumero is present"),
    Rule("kuntanumero_format", "row", _BOTH, "kuntanumero", "kuntanumero is exactly 3 digits"),
    Rule("kuntanumero_unknown", "row", _BOTH, "kuntanumero",
         "kuntanumero is in the evaluation's municipalities.csv"),
    Rule("tilastokuukausi_missing", "row", _KELA, "tilastokuukausi", "tilastokuukausi is present"),
    Rule("tilastokuukausi_format", "row", _KELA, "tilastokuukausi",
         "tilastokuukausi is YYYYMM with month 01-12"),
    Rule("tilastokuukausi_range", "row", _KELA, "tilastokuukausi",
         "tilastokuukausi is 201701 or later and not in the future"),
    Rule("month_mismatch", "row", _KELA, "tilastokuukausi",
         "tilastokuukausi equals the month in the file name"),
    Rule("kotitaloustyyppi_missing", "row", _KELA, "kotitaloustyyppi", "kotitaloustyyppi is present"),
    Rule("kotitaloustyyppi_type", "row", _KELA, "kotitaloustyyppi", "kotitaloustyyppi is an integer"),
    Rule("kotitaloustyyppi_range", "row", _KELA, "kotitaloustyyppi", "kotitaloustyyppi is 1-5"),
    Rule("tyomarkkina_asema_missing", "row", _KELA, "tyomarkkina_asema", "tyomarkkina_asema is present"),
    Rule("tyomarkkina_asema_type", "row", _KELA, "tyomarkkina_asema", "tyomarkkina_asema is an integer"),
    Rule("tyomarkkina_asema_range", "row", _KELA, "tyomarkkina_asema", "tyomarkkina_asema is 1-6"),
    Rule("perusosa_eur_missing", "row", _KELA, "perusosa_eur", "perusosa_eur is present"),
    Rule("perusosa_eur_type", "row", _KELA, "perusosa_eur",
         "perusosa_eur is a finite decimal with a decimal comma and at most 2 decimals"),
    Rule("perusosa_eur_range", "row", _KELA, "perusosa_eur", "perusosa_eur is >= 0 and < 100000"),
    Rule("myonnetty_eur_missing", "row", _KELA, "myonnetty_eur", "myonnetty_eur is present"),
    Rule("myonnetty_eur_type", "row", _KELA, "myonnetty_eur",
         "myonnetty_eur is a finite decimal with a decimal comma and at most 2 decimals"),
    Rule("myonnetty_eur_range", "row", _KELA, "myonnetty_eur", "myonnetty_eur is >= 0 and < 100000"),
    Rule("perusosan_alennus_pct_missing", "row", _KELA, "perusosan_alennus_pct",
         "perusosan_alennus_pct is present"),
    Rule("perusosan_alennus_pct_type", "row", _KELA, "perusosan_alennus_pct",
         "perusosan_alennus_pct is an integer"),
    Rule("perusosan_alennus_pct_range", "row", _KELA, "perusosan_alennus_pct",
         "perusosan_alennus_pct is 0, 20 or 40"),
    Rule("ohjaus_sosiaalityohon_missing", "row", _KELA, "ohjaus_sosiaalityohon",
         "ohjaus_sosiaalityohon is present"),
    Rule("ohjaus_sosiaalityohon_type", "row", _KELA, "ohjaus_sosiaalityohon",
         "ohjaus_sosiaalityohon is an integer"),
    Rule("ohjaus_sosiaalityohon_range", "row", _KELA, "ohjaus_sosiaalityohon",
         "ohjaus_sosiaalityohon is 0 or 1"),
    # --- AVAIN-style columns ---------------------------------------------------
    Rule("kuntanumero_file_mismatch", "row", _AVAIN, "kuntanumero",
         "kuntanumero equals the municipality in the file name"),
    Rule("arviointipvm_missing", "row", _AVAIN, "arviointipvm", "arviointipvm is present"),
    Rule("arviointipvm_format", "row", _AVAIN, "arviointipvm",
         "arviointipvm is a real date YYYY-MM-DD"),
    Rule("arviointipvm_range", "row", _AVAIN, "arviointipvm",
         "arviointipvm is 2017-01-01 or later and not in the future"),
    Rule("year_mismatch", "row", _AVAIN, "arviointipvm",
         "the year of arviointipvm equals the year in the file name"),
    Rule("arviointikerta_missing", "row", _AVAIN, "arviointikerta", "arviointikerta is present"),
    Rule("arviointikerta_type", "row", _AVAIN, "arviointikerta", "arviointikerta is an integer"),
    Rule("arviointikerta_range", "row", _AVAIN, "arviointikerta", "arviointikerta is >= 0"),
    Rule("tavoitealue_missing", "row", _AVAIN, "tavoitealue", "tavoitealue is present"),
    Rule("tavoitealue_unknown", "row", _AVAIN, "tavoitealue",
         "tavoitealue is one of the eight goal-domain codes"),
    Rule("tilannearvio_missing", "row", _AVAIN, "tilannearvio", "tilannearvio is present"),
    Rule("tilannearvio_type", "row", _AVAIN, "tilannearvio", "tilannearvio is an integer"),
    Rule("tilannearvio_range", "row", _AVAIN, "tilannearvio", "tilannearvio is 0-10"),
    Rule("tavoitteen_saavutus_type", "row", _AVAIN, "tavoitteen_saavutus",
         "tavoitteen_saavutus is an integer when present"),
    Rule("tavoitteen_saavutus_range", "row", _AVAIN, "tavoitteen_saavutus",
         "tavoitteen_saavutus is 1-5 when present"),
    Rule("tavoitteen_saavutus_at_baseline", "row", _AVAIN, "tavoitteen_saavutus",
         "tavoitteen_saavutus is empty at baseline (arviointikerta = 0)"),
    Rule("tavoitteen_saavutus_missing", "row", _AVAIN, "tavoitteen_saavutus",
         "tavoitteen_saavutus is present at a review (arviointikerta >= 1)"),
    Rule("tilannetekijat_format", "row", _AVAIN, "tilannetekijat",
         "tilannetekijat is empty or '|'-separated CODE:+ / CODE:- items with goal-domain codes"),
    Rule("asiakas_lasna_missing", "row", _AVAIN, "asiakas_lasna", "asiakas_lasna is present"),
    Rule("asiakas_lasna_type", "row", _AVAIN, "asiakas_lasna", "asiakas_lasna is an integer"),
    Rule("asiakas_lasna_range", "row", _AVAIN, "asiakas_lasna", "asiakas_lasna is 0 or 1"),
    # --- set rules -------------------------------------------------------------
    Rule("duplicate_key", "set", _BOTH, None,
         "(hetu, tilastokuukausi) resp. (hetu, arviointipvm, tavoitealue) is unique in the delivery"),
    Rule("assessment_too_many_goals", "set", _AVAIN, None,
         "an assessment (hetu, arviointipvm) has at most three goals"),
)

RULES: dict[str, Rule] = {rule.code: rule for rule in _RULES}
"""Every rule by code, in precedence order (the first broken rule is recorded)."""

PRECEDENCE: dict[str, int] = {code: i for i, code in enumerate(RULES)}
"""Position of each rule code; lower wins when a row breaks several."""


def rules_for(extract: Extract, scope: Scope | None = None) -> list[Rule]:
    """The rules that apply to one extract, optionally of one scope, in precedence order."""
    return [r for r in _RULES if extract in r.extracts and (scope is None or r.scope == scope)]


def first_broken(codes: list[str] | set[str]) -> str:
    """The code recorded for a row that breaks all of ``codes``."""
    return min(codes, key=PRECEDENCE.__getitem__)
