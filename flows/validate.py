"""The ``validate-delivery`` flow: check a delivery directory against the contracts."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.evaluate import retry_unless_expected
from schemas.config import EvaluationConfig


@task(name="validate delivery", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless_expected)
def validate_directory(directory: Path, config: EvaluationConfig) -> dict:
    """Run the contract checks on every file of a delivery directory."""
    from pipeline.load import validate_delivery

    report = validate_delivery(directory, config=config)
    return {"exit_code": report.exit_code, "json": report.to_json()}


@flow(name="validate-delivery", log_prints=True)
def validate(directory: Path, config: EvaluationConfig = EvaluationConfig()) -> int:
    """Validate a delivery; fails the flow run when the delivery breaks its contract."""
    result = validate_directory(directory, config)
    create_markdown_artifact(
        markdown=f"# Contract check of `{directory.name}`\n\nexit code {result['exit_code']}\n\n"
        f"```json\n{result['json'][:20000]}\n```",
        key="contract-check",
        description="Contract violations of the delivery",
    )
    if result["exit_code"] != 0:
        from pipeline.errors import ContractViolationError, InputError

        error = InputError if result["exit_code"] == 2 else ContractViolationError
        raise error(f"delivery {directory} breaks its contract (exit code {result['exit_code']}): "
                    "see the contract-check artifact")
    return result["exit_code"]
