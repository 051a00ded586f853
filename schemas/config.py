"""The evaluation configuration: one model, read once, passed down.

Defaults equal ``evaluation_design.md``. Every part can be overridden from a TOML
file (``kokeilu run --config FILE``) or from ``KOKEILU_``-prefixed environment
variables (nested with ``__``, e.g. ``KOKEILU_DISCLOSURE__MIN_CELL_PERSONS=10``).
The pseudonymisation key is *not* configuration: it is a secret read elsewhere
and never written with the configuration.

Examples
--------
>>> cfg = EvaluationConfig()
>>> cfg.schedule()["851"]
('2018-01', '2018-12')
>>> cfg = EvaluationConfig(pilot_schedule={"837": PilotPeriod(start="2017-11", end="2019-12")})
>>> cfg.schedule()["837"]
('2017-11', '2019-12')
"""

from __future__ import annotations

import csv
import datetime as dt
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REFERENCE_MUNICIPALITIES = Path(__file__).parent / "reference" / "municipalities.csv"

YM_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"

MONTHLY_OUTCOMES: tuple[str, ...] = ("received", "amount_eur", "reduced_basic_amount", "social_work_notification")
YEARLY_OUTCOMES: tuple[str, ...] = ("long_term_receipt",)
AVAIN_OUTCOMES: tuple[str, ...] = ("avain_situation", "avain_goal_achieved")
Outcome = Literal[
    "received", "amount_eur", "reduced_basic_amount", "social_work_notification",
    "long_term_receipt", "avain_situation", "avain_goal_achieved",
]
BootstrapWeights = Literal["webb", "rademacher"]
Covariate = Literal[
    "age_band", "sex", "kotitaloustyyppi", "tyomarkkina_asema", "baseline_receipt_band", "baseline_reduced",
    "baseline_receipt_months", "age_at_reference",
]
"""Baseline covariates: columns of ``panel.cohort``, fixed per person at baseline."""
DISCRETE_COVARIATES: tuple[str, ...] = (
    "age_band", "sex", "kotitaloustyyppi", "tyomarkkina_asema", "baseline_receipt_band", "baseline_reduced",
)
"""The covariates with a few levels each, usable as strata (the others are counts, summarised by their mean)."""


class ConfigError(ValueError):
    """A configuration file or value does not match the configuration model."""


class Municipality(BaseModel):
    """One municipality of the reference data."""

    model_config = ConfigDict(frozen=True)

    kuntanumero: str = Field(pattern=r"^\d{3}$")
    name_fi: str
    name_sv: str
    role: Literal["pilot", "control"]
    population_2016: int


class PilotPeriod(BaseModel):
    """First and last month a municipality was in the pilot (inclusive, ``YYYY-MM``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: str = Field(pattern=YM_PATTERN)
    end: str = Field(pattern=YM_PATTERN)

    @model_validator(mode="after")
    def _ordered(self) -> PilotPeriod:
        if self.end < self.start:
            raise ValueError(f"pilot ends {self.end} before it starts {self.start}")
        return self


class CohortRules(BaseModel):
    """Who is in the intent-to-treat cohort, fixed at baseline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    age_min: int = Field(25, ge=0, le=120)
    age_max: int = Field(64, ge=0, le=120)
    age_reference_date: dt.date = dt.date(2017, 12, 31)
    support_window_start: str = Field("2017-07", pattern=YM_PATTERN)
    support_window_end: str = Field("2017-12", pattern=YM_PATTERN)
    baseline_year: int = 2017
    labour_market_codes: tuple[int, ...] = (3,)
    panel_start: str = Field("2017-01", pattern=YM_PATTERN)

    @model_validator(mode="after")
    def _ordered(self) -> CohortRules:
        if self.age_max < self.age_min:
            raise ValueError(f"age_max {self.age_max} is below age_min {self.age_min}")
        if self.support_window_end < self.support_window_start:
            raise ValueError("support_window_end is before support_window_start")
        return self


class DisclosureSettings(BaseModel):
    """Statistical disclosure control of every published cell."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_cell_persons: int = Field(
        5, ge=1, description="rows carried by fewer persons (the treated side; a municipality's own persons for a "
                             "per-municipality row) are suppressed, with secondary suppression so that none can be "
                             "recomputed from published rows")
    dominance_n: int = Field(1, ge=1, description="the (n, k) dominance rule: how many largest recipients")
    dominance_k: float = Field(
        0.5, gt=0, le=1, description="the (n, k) dominance rule: a euro sum is suppressed when its dominance_n "
                                    "largest recipients hold more than this share of it")


class LoadingSettings(BaseModel):
    """Guards of the load: what a delivery may do to data already loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_month_shrink: float = Field(
        0.2, ge=0, le=1,
        description="refuse a re-delivered Kela-style month with more than this share fewer valid rows than "
                    "the rows it replaces (0.2: at most 20 % fewer); --allow-shrink REASON overrides",
    )
    month_volume_band: float = Field(
        0.5, gt=0, le=10,
        description="a run fails when a month's staged rows differ from the median of its neighbours' by more "
                    "than this share (0.5: outside 50-150 % of it)",
    )
    month_volume_neighbours: int = Field(
        2, ge=1, le=12, description="months on each side whose median a month's row count is compared with",
    )


class InferenceSettings(BaseModel):
    """Few-cluster inference: bootstrap, randomization inference, confidence level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)
    bootstrap_draws: int = Field(99_999, ge=99)
    bootstrap_weights: BootstrapWeights = "webb"
    randomization_max_assignments: int = Field(5_000_000, ge=1, description="enumerate fully up to this many")
    randomization_draws: int = Field(9_999, ge=99, description="seeded draws when the design has more")
    subgroup_max_assignments: int = Field(
        100_000, ge=1, description="enumerate subgroup designs fully up to this many, else seeded draws"
    )
    pretrend_draws: int = Field(
        999, ge=19, description="seeded reassignments for the randomization p-value of the event-study lead test"
    )
    placebo_replications: int = Field(
        200, ge=10, description="fake pilots among comparison municipalities behind results.placebo_size"
    )
    placebo_draws: int = Field(
        999, ge=99, description="bootstrap draws and randomization draws of each test in a fake pilot"
    )
    sdid_replications: int = Field(100, ge=2, description="placebo reassignments behind synthetic DiD's standard error")
    seed: int = 20180101


class EvaluationConfig(BaseSettings):
    """Everything an evaluation run depends on besides its input files and secret key."""

    model_config = SettingsConfigDict(env_prefix="KOKEILU_", env_nested_delimiter="__", extra="forbid", frozen=True)

    municipalities_file: Path | None = Field(
        None, description="reference data of the evaluation's municipalities; empty = the one shipped with kokeilu"
    )
    pilot_schedule: dict[str, PilotPeriod] = Field(
        default_factory=dict,
        description="pilot months by kuntanumero; empty = as in municipalities_file",
    )
    cohort: CohortRules = CohortRules()
    outcomes: tuple[Outcome, ...] = MONTHLY_OUTCOMES + YEARLY_OUTCOMES + AVAIN_OUTCOMES
    headline_outcomes: tuple[Outcome, ...] = ("received", "amount_eur")
    subgroups: tuple[Literal["municipality", "age_band", "sex", "kotitaloustyyppi"], ...] = (
        "municipality", "age_band", "sex", "kotitaloustyyppi",
    )
    age_bands: tuple[tuple[int, int], ...] = ((25, 34), (35, 49), (50, 64))
    covariates: tuple[Covariate, ...] = Field(
        DISCRETE_COVARIATES,
        description="baseline covariates of conditional parallel trends and the balance table (columns of "
                    "panel.cohort); the discrete ones form the strata of the weighting; empty = unconditional",
    )
    disclosure: DisclosureSettings = DisclosureSettings()
    loading: LoadingSettings = LoadingSettings()
    inference: InferenceSettings = InferenceSettings()
    require_synthetic_hetu: bool = Field(
        True, description="reject identity codes outside 900-999 (a guard while only synthetic data is expected)"
    )
    pilot_cost_eur: float | None = Field(None, ge=0, description="the pilot's cost, for the cost view")
    anticipation_schedule: dict[str, PilotPeriod] = Field(
        default_factory=lambda: {"837": PilotPeriod(start="2017-11", end="2019-12")},
        description="schedule overrides of the anticipation check (Tampere's own project from 2017-11); "
                    "empty = no check",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values (from a TOML file) win over the environment; no dotenv, no secrets dir."""
        return (init_settings, env_settings)

    @field_validator("pilot_schedule", "anticipation_schedule")
    @classmethod
    def _known_codes(cls, schedule: dict[str, PilotPeriod]) -> dict[str, PilotPeriod]:
        for code in schedule:
            if len(code) != 3 or not code.isdigit():
                raise ValueError(f"pilot_schedule key {code!r}: expected a 3-digit kuntanumero")
        return schedule

    @field_validator("covariates")
    @classmethod
    def _distinct_covariates(cls, covariates: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({c for c in covariates if covariates.count(c) > 1})
        if repeated:
            raise ValueError(f"covariates: expected each covariate once, found {', '.join(repeated)} repeated")
        return covariates

    @property
    def municipalities_path(self) -> Path:
        """The municipalities reference file in force."""
        return self.municipalities_file or REFERENCE_MUNICIPALITIES

    def municipality_codes(self) -> frozenset[str]:
        """Every known kuntanumero."""
        return frozenset(m.kuntanumero for m in self.municipalities())

    def municipalities(self) -> list[Municipality]:
        """The evaluation's municipalities, from ``municipalities_file``."""
        return [m for m, _ in _read_municipalities(self.municipalities_path)]

    def schedule(self) -> dict[str, tuple[str, str]]:
        """Pilot months ``(start, end)`` by kuntanumero: the reference file, overridden by ``pilot_schedule``."""
        base = {m.kuntanumero: p for m, p in _read_municipalities(self.municipalities_path) if p is not None}
        base.update({k: (v.start, v.end) for k, v in self.pilot_schedule.items()})
        return dict(sorted(base.items()))

    def anticipation(self) -> dict[str, tuple[str, str]]:
        """The schedule of the anticipation check: :meth:`schedule` with ``anticipation_schedule`` applied."""
        base = self.schedule()
        base.update({k: (v.start, v.end) for k, v in self.anticipation_schedule.items()})
        return dict(sorted(base.items()))

    def to_toml(self) -> str:
        """The configuration as TOML (round-trips through :func:`load_config`)."""
        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


@cache
def _read_municipalities(path: Path) -> tuple[tuple[Municipality, tuple[str, str] | None], ...]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        m = Municipality(
            kuntanumero=row["kuntanumero"],
            name_fi=row["nimi_fi"],
            name_sv=row["nimi_sv"],
            role=row["rooli"],
            population_2016=int(row["vaesto_2016"]),
        )
        period = (row["pilotti_alku"], row["pilotti_loppu"]) if row["pilotti_alku"] else None
        out.append((m, period))
    return tuple(out)


def load_config(path: Path | None = None) -> EvaluationConfig:
    """Read the configuration from a TOML file (or defaults), raising :class:`ConfigError` in one line."""
    if path is None:
        return EvaluationConfig()
    try:
        data: dict[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    try:
        return EvaluationConfig(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"configuration file {path}: field '{where}': {first['msg']}") from None
