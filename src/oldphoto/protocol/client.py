"""Client-to-server messages on `/ws/progress`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter


class Subscribe(BaseModel):
    type: Literal["subscribe"]
    job_id: str = Field(min_length=1, max_length=64)
    after_seq: int = Field(0, ge=0)


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    job_id: str = Field(min_length=1, max_length=64)


class Cancel(BaseModel):
    type: Literal["cancel"]
    job_id: str = Field(min_length=1, max_length=64)


class Ping(BaseModel):
    type: Literal["ping"]


ClientMessage = Annotated[Subscribe | Unsubscribe | Cancel | Ping, Field(discriminator="type")]
client_message = TypeAdapter(ClientMessage)
