"""The one error placement raises for a request it cannot take as asked."""

from __future__ import annotations


class PlacementError(ValueError):
    """A request field is wrong; `field` names it so an RPC can answer INVALID_ARGUMENT with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
