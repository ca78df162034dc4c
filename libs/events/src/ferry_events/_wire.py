"""Base model for everything that travels on the wire: camelCase outside, snake_case inside."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A pydantic model whose JSON form uses camelCase field names.

    Unknown fields are ignored on read, so a newer producer does not break an
    older consumer; Python code may use either the snake_case name or the alias.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        ser_json_timedelta="float",
    )

    def to_wire(self) -> dict[str, object]:
        """The JSON-compatible dict with camelCase keys, as it is put on the wire."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
