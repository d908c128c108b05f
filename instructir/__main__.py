"""`python -m instructir` runs the CLI."""

from instructir.cli import app

app(prog_name="instructir")
