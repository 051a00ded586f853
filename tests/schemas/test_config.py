"""The evaluation configuration: defaults, TOML round trip, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.config import ConfigError, EvaluationConfig, PilotPeriod, load_config


def test_defaults_equal_the_design() -> None:
    cfg = EvaluationConfig()
    schedule = cfg.schedule()
    assert set(schedule) == {"211", "320", "297", "680", "837", "851"}
    assert schedule["851"] == ("2018-01", "2018-12")
    assert all(v == ("2018-01", "2019-12") for k, v in schedule.items() if k != "851")
    assert len(cfg.municipalities()) == 31
    assert sum(m.role == "control" for m in cfg.municipalities()) == 25
    assert (cfg.cohort.age_min, cfg.cohort.age_max) == (25, 64)
    assert cfg.cohort.labour_market_codes == (3,)
    assert cfg.disclosure.min_cell_persons == 5


def test_round_trip_through_toml(tmp_path: Path) -> None:
    cfg = EvaluationConfig(pilot_schedule={"837": PilotPeriod(start="2017-11", end="2019-12")})
    path = tmp_path / "evaluation.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    again = load_config(path)
    assert again == cfg
    assert again.schedule()["837"] == ("2017-11", "2019-12")
    assert EvaluationConfig().to_toml() == load_config_text(tmp_path, EvaluationConfig().to_toml()).to_toml()


def load_config_text(tmp_path: Path, text: str) -> EvaluationConfig:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[disclosure]\nmin_cell_persons = 0\n", "disclosure.min_cell_persons"),
        ('[pilot_schedule."837"]\nstart = "2017-13"\nend = "2019-12"\n', "pilot_schedule.837.start"),
        ("[cohort]\nage_min = 'old'\n", "cohort.age_min"),
        ("unknown_option = 1\n", "unknown_option"),
    ],
)
def test_malformed_file_gives_one_line_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message
    assert f"'{field}'" in message


def test_invalid_toml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_text(tmp_path, "[cohort\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOKEILU_DISCLOSURE__MIN_CELL_PERSONS", "10")
    assert EvaluationConfig().disclosure.min_cell_persons == 10
