"""``kokeilu validate``: exit 0 clean, 1 contract violations (file, line, rule), 2 unusable input or arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.hetu import check_character

KELA_HEADER = ("hetu;kotitalous_id;kuntanumero;tilastokuukausi;kotitaloustyyppi;tyomarkkina_asema;perusosa_eur;"
               "myonnetty_eur;perusosan_alennus_pct;ohjaus_sosiaalityohon")
AVAIN_HEADER = ("hetu;kuntanumero;arviointipvm;arviointikerta;tavoitealue;tilannearvio;tavoitteen_saavutus;"
                "tilannetekijat;palvelut;menetelmat;asiakas_lasna")
RUNNER = CliRunner()


def _hetu(ddmmyy: str, individual: int, sign: str = "-") -> str:
    zzz = f"{individual:03d}"
    return ddmmyy + sign + zzz + check_character(ddmmyy + zzz)


PEOPLE = [_hetu("010190", 901), _hetu("150875", 944), _hetu("290204", 990, "A")]


def _kela_lines() -> list[str]:
    return [KELA_HEADER] + [f"{h};KT{i:04d};837;201803;1;3;491,21;{100 + i},50;0;0" for i, h in enumerate(PEOPLE)]


def _avain_lines() -> list[str]:
    return [AVAIN_HEADER,
            f"{PEOPLE[0]};837;2018-03-14;0;TOIMEENTULO;4;;ASUMINEN:+;VELKANEUVONTA;YKSILOTYO;1",
            f"{PEOPLE[0]};837;2018-09-20;1;TOIMEENTULO;6;4;;;YKSILOTYO;1"]


def _write(directory: Path, name: str, lines: list[str]) -> None:
    (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """A tiny delivery that breaks no rule: one Kela-style month, one AVAIN-style file."""
    _write(tmp_path, "toimeentulotuki_201803.csv", _kela_lines())
    _write(tmp_path, "avain_837_2018.csv", _avain_lines())
    return tmp_path


@pytest.fixture
def violations(clean: Path) -> Path:
    """The clean delivery with a bad municipality on Kela line 3 and a baseline score on AVAIN line 2."""
    kela = _kela_lines()
    kela[2] = kela[2].replace(";837;", ";9x1;")
    _write(clean, "toimeentulotuki_201803.csv", kela)
    avain = _avain_lines()
    avain[1] = avain[1].replace(";0;TOIMEENTULO;4;;", ";0;TOIMEENTULO;4;3;")
    _write(clean, "avain_837_2018.csv", avain)
    return clean


def _validate(*args: str, env: dict[str, str] | None = None):  # noqa: ANN202 - typer's Result
    return RUNNER.invoke(app, ["validate", *args], env={"COLUMNS": "200", **(env or {})})


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_clean_delivery_exits_0(clean: Path) -> None:
    result = _validate(str(clean))
    assert result.exit_code == 0, result.output
    assert "2 files, 5 rows: 5 valid, 0 quarantined, 0 files rejected" in _flat(result.output)


def test_violations_exit_1_naming_file_line_and_rule(violations: Path) -> None:
    result = _validate(str(violations))
    assert result.exit_code == 1, result.output
    out = _flat(result.output)
    assert "toimeentulotuki_201803.csv:3: kuntanumero_format:" in out
    assert "avain_837_2018.csv:2: tavoitteen_saavutus_at_baseline:" in out
    assert "2 quarantined" in out


def test_json_output_parses_and_matches_the_violations(violations: Path) -> None:
    result = _validate(str(violations), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["exit_code"] == 1
    assert report["unusable"] is None
    assert report["totals"]["rows_in"] == 5
    assert report["totals"]["rows_valid"] == 3
    assert report["totals"]["quarantined_by_rule"] == {"kuntanumero_format": 1, "tavoitteen_saavutus_at_baseline": 1}
    found = {(f["file"], v["line"], v["rule"]) for f in report["files"] for v in f["violations"]}
    assert found == {("toimeentulotuki_201803.csv", 3, "kuntanumero_format"),
                     ("avain_837_2018.csv", 2, "tavoitteen_saavutus_at_baseline")}
    for f in report["files"]:
        assert f["rows_in"] == f["rows_staged"] + f["rows_quarantined"]


def test_json_output_of_a_clean_delivery(clean: Path) -> None:
    result = _validate(str(clean), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["exit_code"] == 0
    assert {f["file"]: f["rows_staged"] for f in report["files"]} == {"toimeentulotuki_201803.csv": 3,
                                                                      "avain_837_2018.csv": 2}


def test_binary_bytes_named_csv_is_a_file_rule(tmp_path: Path) -> None:
    """A file that cannot be read as text breaks a file rule of the contract: reported like any violation."""
    (tmp_path / "toimeentulotuki_201803.csv").write_bytes(bytes(range(256)) * 8)
    result = _validate(str(tmp_path), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert [(f["file"], f["file_rule"]) for f in report["files"]] == [("toimeentulotuki_201803.csv", "file_encoding")]
    plain = _validate(str(tmp_path))
    assert "toimeentulotuki_201803.csv:0: file_encoding:" in _flat(plain.output)


def test_missing_directory_exits_2_in_one_line(tmp_path: Path) -> None:
    result = _validate(str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("as_json", [False, True])
def test_directory_without_delivery_files_exits_2(tmp_path: Path, as_json: bool) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see", encoding="utf-8")
    result = _validate(str(tmp_path), *(["--json"] if as_json else []))
    assert result.exit_code == 2, result.output
    if as_json:
        report = json.loads(result.output)
        assert report["exit_code"] == 2 and "holds no" in report["unusable"]
    else:
        assert "unusable input" in result.output


def test_a_file_instead_of_a_directory_exits_2(clean: Path) -> None:
    result = _validate(str(clean / "toimeentulotuki_201803.csv"))
    assert result.exit_code == 2, result.output


def test_bad_arguments_exit_2(clean: Path) -> None:
    assert _validate().exit_code == 2
    assert _validate(str(clean), "--no-such-option").exit_code == 2


def test_validate_with_db_loads_the_valid_rows(violations: Path, tmp_path: Path) -> None:
    db = tmp_path / "out" / "v.duckdb"
    result = _validate(str(violations), "--db", str(db), "--json",
                       env={"KOKEILU_PSEUDONYM_KEY": "a-key-of-at-least-sixteen-bytes"})
    assert result.exit_code == 1, result.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        staged = con.execute("select count(*) from staging.kela_income_support").fetchall()[0][0]
        rules = con.execute("select source_file, source_line, rule from quarantine.kela_income_support").fetchall()
    finally:
        con.close()
    assert staged == 2
    assert rules == [("toimeentulotuki_201803.csv", 3, "kuntanumero_format")]


def test_exit_codes_of_the_installed_command(violations: Path, tmp_path: Path) -> None:
    """The same codes through a real process, as a shell script sees them."""
    command = [sys.executable, "-c", "from flows.cli import main; main()", "validate"]
    good = tmp_path / "good"
    good.mkdir()
    _write(good, "toimeentulotuki_201803.csv", _kela_lines())
    codes = [subprocess.run([*command, str(d)], capture_output=True, text=True).returncode
             for d in (good, violations, tmp_path / "nowhere")]
    assert codes == [0, 1, 2]
