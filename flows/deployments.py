"""Deployments of the flows, with their schedules, for ``kokeilu serve``.

Schedules run only against a real Prefect server (not the ephemeral one):

    prefect server start                       # UI at http://127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    kokeilu serve --kela deliveries/kela --avain deliveries/avain
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.config import EvaluationConfig

TIMEZONE = "Europe/Helsinki"
EVALUATE_CRON = "0 6 20 * *"
"""Monthly, on the 20th at 06:00 Helsinki time: after Kela's monthly delivery has arrived."""
VALIDATE_CRON = "0 5 * * *"
"""Daily at 05:00: check whatever has been delivered, before anyone relies on it."""


def deployments(*, kela: Path, avain: Path | None, db: Path, cron: str = EVALUATE_CRON) -> list[Any]:
    """The deployments kokeilu serves: the monthly evaluation and the daily contract check."""
    from prefect.schedules import Cron

    from flows.evaluate import EvaluateParameters, evaluate
    from flows.validate import validate

    params = EvaluateParameters(kela=kela.resolve(), avain=avain.resolve() if avain else None, db=db.resolve(),
                                out=db.resolve().parent, config=EvaluationConfig())
    return [
        evaluate.to_deployment(
            name="monthly-evaluation",
            schedules=[Cron(cron, timezone=TIMEZONE)],
            parameters={"params": params.model_dump(mode="json")},
            description="Load the newest delivery, rebuild the panels, re-estimate, rewrite the report.",
            tags=["kokeilu"],
        ),
        validate.to_deployment(
            name="daily-contract-check",
            schedules=[Cron(VALIDATE_CRON, timezone=TIMEZONE)],
            parameters={"directory": str(kela.resolve())},
            description="Check the delivery directory against the data contracts.",
            tags=["kokeilu"],
        ),
    ]


def register_deployments(*, kela: Path, avain: Path | None, db: Path, cron: str = EVALUATE_CRON) -> list[str]:
    """Register the deployments with the Prefect API in ``PREFECT_API_URL``; returns their ids."""
    return [str(d.apply()) for d in deployments(kela=kela, avain=avain, db=db, cron=cron)]


def serve_deployments(*, kela: Path, avain: Path | None, db: Path, cron: str = EVALUATE_CRON) -> None:
    """Register the deployments and serve them until interrupted."""
    import os

    from prefect import serve

    if not os.environ.get("PREFECT_API_URL"):
        from pipeline.errors import InputError

        raise InputError(
            "schedules need a Prefect server: run `prefect server start` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` first"
        )
    serve(*deployments(kela=kela, avain=avain, db=db, cron=cron))
