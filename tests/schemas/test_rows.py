"""Every row rule of both extracts: one passing and one failing example each."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.columns import CheckContext
from schemas.rows import AvainRow, KelaRow, explain
from schemas.rules import RULES, rules_for

MUNICIPALITIES = frozenset({"837", "091", "211"})
TODAY = dt.date(2026, 11, 1)
KELA_CTX = CheckContext(municipalities=MUNICIPALITIES, file_month="201803", today=TODAY)
AVAIN_CTX = CheckContext(municipalities=MUNICIPALITIES, file_kuntanumero="837", file_year=2018, today=TODAY)

KELA_OK = {
    "hetu": "010190-900P",
    "kotitalous_id": "KT000123",
    "kuntanumero": "837",
    "tilastokuukausi": "201803",
    "kotitaloustyyppi": "1",
    "tyomarkkina_asema": "3",
    "perusosa_eur": "491,21",
    "myonnetty_eur": "312,47",
    "perusosan_alennus_pct": "0",
    "ohjaus_sosiaalityohon": "0",
}
AVAIN_OK = {
    "hetu": "010190-900P",
    "kuntanumero": "837",
    "arviointipvm": "2018-03-14",
    "arviointikerta": "1",
    "tavoitealue": "TOIMEENTULO",
    "tilannearvio": "6",
    "tavoitteen_saavutus": "4",
    "tilannetekijat": "ASUMINEN:+|PAIHTEET:-",
    "palvelut": "VELKANEUVONTA|TYOPAJA",
    "menetelmat": "YKSILOTYO|RYHMA",
    "asiakas_lasna": "1",
}

# rule code -> (changes to the valid row, a passing variant that exercises the same rule)
KELA_CASES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "hetu_missing": ({"hetu": ""}, {"hetu": "010190-900P"}),
    "hetu_format": ({"hetu": "010190-900"}, {"hetu": "311299-998D"}),
    "hetu_century_sign": ({"hetu": "010190G900P"}, {"hetu": "010105A900S"}),
    "hetu_date": ({"hetu": "300290-900P"}, {"hetu": "290296-9004"}),
    "hetu_individual_number": ({"hetu": "010190-001F"}, {"hetu": "010190Y900P"}),
    "hetu_not_synthetic": ({"hetu": "131052-308T"}, {"hetu": "131052-9982"}),
    "hetu_check_character": ({"hetu": "010190-900R"}, {"hetu": "010190-900P"}),
    "kotitalous_id_missing": ({"kotitalous_id": ""}, {"kotitalous_id": "x"}),
    "kuntanumero_missing": ({"kuntanumero": ""}, {"kuntanumero": "091"}),
    "kuntanumero_format": ({"kuntanumero": "9x1"}, {"kuntanumero": "091"}),
    "kuntanumero_unknown": ({"kuntanumero": "999"}, {"kuntanumero": "211"}),
    "tilastokuukausi_missing": ({"tilastokuukausi": ""}, {}),
    "tilastokuukausi_format": ({"tilastokuukausi": "2018-03"}, {}),
    "tilastokuukausi_range": ({"tilastokuukausi": "201612"}, {}),
    "month_mismatch": ({"tilastokuukausi": "201804"}, {}),
    "kotitaloustyyppi_missing": ({"kotitaloustyyppi": ""}, {"kotitaloustyyppi": "5"}),
    "kotitaloustyyppi_type": ({"kotitaloustyyppi": "1,0"}, {"kotitaloustyyppi": "4"}),
    "kotitaloustyyppi_range": ({"kotitaloustyyppi": "6"}, {"kotitaloustyyppi": "2"}),
    "tyomarkkina_asema_missing": ({"tyomarkkina_asema": ""}, {"tyomarkkina_asema": "6"}),
    "tyomarkkina_asema_type": ({"tyomarkkina_asema": " 3"}, {"tyomarkkina_asema": "1"}),
    "tyomarkkina_asema_range": ({"tyomarkkina_asema": "0"}, {"tyomarkkina_asema": "6"}),
    "perusosa_eur_missing": ({"perusosa_eur": ""}, {"perusosa_eur": "487,89"}),
    "perusosa_eur_type": ({"perusosa_eur": "487.89"}, {"perusosa_eur": "487,8"}),
    "perusosa_eur_range": ({"perusosa_eur": "-1,00"}, {"perusosa_eur": "0"}),
    "myonnetty_eur_missing": ({"myonnetty_eur": ""}, {"myonnetty_eur": "0,00"}),
    "myonnetty_eur_type": ({"myonnetty_eur": "NaN"}, {"myonnetty_eur": "12"}),
    "myonnetty_eur_range": ({"myonnetty_eur": "100000,00"}, {"myonnetty_eur": "99999,99"}),
    "perusosan_alennus_pct_missing": ({"perusosan_alennus_pct": ""}, {"perusosan_alennus_pct": "40"}),
    "perusosan_alennus_pct_type": ({"perusosan_alennus_pct": "20%"}, {"perusosan_alennus_pct": "20"}),
    "perusosan_alennus_pct_range": ({"perusosan_alennus_pct": "30"}, {"perusosan_alennus_pct": "40"}),
    "ohjaus_sosiaalityohon_missing": ({"ohjaus_sosiaalityohon": ""}, {"ohjaus_sosiaalityohon": "1"}),
    "ohjaus_sosiaalityohon_type": ({"ohjaus_sosiaalityohon": "yes"}, {"ohjaus_sosiaalityohon": "1"}),
    "ohjaus_sosiaalityohon_range": ({"ohjaus_sosiaalityohon": "2"}, {"ohjaus_sosiaalityohon": "0"}),
}

AVAIN_CASES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "hetu_missing": ({"hetu": ""}, {}),
    "hetu_format": ({"hetu": "010190-90P"}, {}),
    "hetu_century_sign": ({"hetu": "010190Z900P"}, {"hetu": "010190X900P"}),
    "hetu_date": ({"hetu": "320190-900P"}, {}),
    "hetu_individual_number": ({"hetu": "010190-000X"}, {}),
    "hetu_not_synthetic": ({"hetu": "010190-123A"}, {}),
    "hetu_check_character": ({"hetu": "010190-900Z"}, {}),
    "kuntanumero_missing": ({"kuntanumero": ""}, {}),
    "kuntanumero_format": ({"kuntanumero": "83"}, {}),
    "kuntanumero_unknown": ({"kuntanumero": "000"}, {}),
    "kuntanumero_file_mismatch": ({"kuntanumero": "211"}, {}),
    "arviointipvm_missing": ({"arviointipvm": ""}, {"arviointipvm": "2018-12-31"}),
    "arviointipvm_format": ({"arviointipvm": "14.3.2018"}, {"arviointipvm": "2018-01-01"}),
    "arviointipvm_range": ({"arviointipvm": "2016-12-31"}, {}),
    "year_mismatch": ({"arviointipvm": "2019-01-02"}, {}),
    "arviointikerta_missing": ({"arviointikerta": ""}, {"arviointikerta": "7"}),
    "arviointikerta_type": ({"arviointikerta": "first"}, {"arviointikerta": "2"}),
    "arviointikerta_range": ({"arviointikerta": "-1"}, {"arviointikerta": "3"}),
    "tavoitealue_missing": ({"tavoitealue": ""}, {"tavoitealue": "ASUMINEN"}),
    "tavoitealue_unknown": ({"tavoitealue": "toimeentulo"}, {"tavoitealue": "ARJENHALLINTA"}),
    "tilannearvio_missing": ({"tilannearvio": ""}, {"tilannearvio": "0"}),
    "tilannearvio_type": ({"tilannearvio": "7,5"}, {"tilannearvio": "10"}),
    "tilannearvio_range": ({"tilannearvio": "11"}, {"tilannearvio": "10"}),
    "tavoitteen_saavutus_type": ({"tavoitteen_saavutus": "hyvin"}, {"tavoitteen_saavutus": "5"}),
    "tavoitteen_saavutus_range": ({"tavoitteen_saavutus": "0"}, {"tavoitteen_saavutus": "1"}),
    "tavoitteen_saavutus_at_baseline": (
        {"arviointikerta": "0", "tavoitteen_saavutus": "3"},
        {"arviointikerta": "0", "tavoitteen_saavutus": ""},
    ),
    "tavoitteen_saavutus_missing": ({"tavoitteen_saavutus": ""}, {"tavoitteen_saavutus": "2"}),
    "tilannetekijat_format": ({"tilannetekijat": "ASUMINEN+"}, {"tilannetekijat": ""}),
    "asiakas_lasna_missing": ({"asiakas_lasna": ""}, {"asiakas_lasna": "0"}),
    "asiakas_lasna_type": ({"asiakas_lasna": "kyllä"}, {"asiakas_lasna": "0"}),
    "asiakas_lasna_range": ({"asiakas_lasna": "2"}, {"asiakas_lasna": "1"}),
}


def test_valid_rows_pass() -> None:
    assert explain("kela", KELA_OK, KELA_CTX) == []
    assert explain("avain", AVAIN_OK, AVAIN_CTX) == []
    row = KelaRow.model_validate(KELA_OK, context=KELA_CTX)
    assert str(row.myonnetty_eur) == "312.47"
    assert AvainRow.model_validate(AVAIN_OK, context=AVAIN_CTX).tavoitteen_saavutus == 4


def test_every_row_rule_has_a_case() -> None:
    assert set(KELA_CASES) == {r.code for r in rules_for("kela", "row")} - {"row_malformed"}
    assert set(AVAIN_CASES) == {r.code for r in rules_for("avain", "row")} - {"row_malformed"}


@pytest.mark.parametrize("code", sorted(KELA_CASES))
def test_kela_rule(code: str) -> None:
    bad, good = KELA_CASES[code]
    assert explain("kela", {**KELA_OK, **bad}, KELA_CTX)[0] == code
    assert explain("kela", {**KELA_OK, **good}, KELA_CTX) == []


@pytest.mark.parametrize("code", sorted(AVAIN_CASES))
def test_avain_rule(code: str) -> None:
    bad, good = AVAIN_CASES[code]
    assert explain("avain", {**AVAIN_OK, **bad}, AVAIN_CTX)[0] == code
    assert explain("avain", {**AVAIN_OK, **good}, AVAIN_CTX) == []


def test_real_identity_codes_pass_when_synthetic_guard_is_off() -> None:
    ctx = CheckContext(municipalities=MUNICIPALITIES, file_month="201803", today=TODAY, require_synthetic_hetu=False)
    assert explain("kela", {**KELA_OK, "hetu": "131052-308T"}, ctx) == []


def test_first_broken_rule_follows_precedence() -> None:
    codes = explain("kela", {**KELA_OK, "hetu": "", "kuntanumero": "9x1", "kotitaloustyyppi": "9"}, KELA_CTX)
    assert codes == ["hetu_missing", "kuntanumero_format", "kotitaloustyyppi_range"]


def test_missing_key_is_a_missing_value() -> None:
    row = dict(KELA_OK)
    del row["kotitalous_id"]
    assert explain("kela", row, KELA_CTX) == ["kotitalous_id_missing"]


def test_rule_registry_codes_are_unique_and_documented() -> None:
    assert all(r.description for r in RULES.values())
    assert len({r.code for r in RULES.values()}) == len(RULES)
