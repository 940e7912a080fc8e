"""The `rid` command line (the entry point `rid = "rid.cli:app"`)."""

# Each module registers its commands on app, in this order in `rid --help`.
from rid.cli import use, ship, train, judge  # noqa: F401, I001
from rid.cli.base import app

__all__ = ["app"]
