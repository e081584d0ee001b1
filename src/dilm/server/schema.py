"""What every request body of the HTTP API shares: strict bodies, and the shape of a user name."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# What the schema can say about a user name (the Assistant checks it again: `dilm.validate.user`).
USER_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
UserName = Annotated[str, Field(min_length=1, max_length=128, pattern=USER_PATTERN, description="an end user")]


class Body(BaseModel):
    """A request body: unknown fields are refused, and JSON must be typed right (no "1" for 1, no 0 for false)."""

    model_config = ConfigDict(extra="forbid", strict=True)
