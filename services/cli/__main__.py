"""`python -m services.cli` runs cbctl."""

from services.cli import app

app(prog_name="cbctl")
