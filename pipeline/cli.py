from __future__ import annotations
import typer
app = typer.Typer()
@app.command()
def demo() -> None:
    """Not built yet."""
    raise SystemExit(1)
