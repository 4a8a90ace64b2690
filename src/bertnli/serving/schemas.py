"""Request and response bodies of the HTTP API (they also make the OpenAPI page at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from bertnli.data.example import id_problem, is_blank, surrogate_problem
from bertnli.data.readers import DEFAULT_COLUMNS

EXAMPLE_PAIRS = [
    {"premise": "A man is playing a guitar on stage.", "hypothesis": "A person is making music."},
    {"premise": "Two dogs run through a snowy field.", "hypothesis": "The animals are asleep indoors."},
]


class Pair(BaseModel):
    """One premise–hypothesis pair. The texts may also come under the other names the data readers know
    (``sentence1`` / ``sentence2``, as in SNLI's files, ...)."""

    model_config = ConfigDict(extra="forbid")

    premise: str = Field(description="The text taken as true.", examples=[EXAMPLE_PAIRS[0]["premise"]],
                         validation_alias=AliasChoices(*DEFAULT_COLUMNS["premise"]))
    hypothesis: str = Field(
        description="The text judged against the premise.", examples=[EXAMPLE_PAIRS[0]["hypothesis"]],
        validation_alias=AliasChoices(*DEFAULT_COLUMNS["hypothesis"]),
    )
    id: str | int | None = Field(None, description="Optional: the caller's name for the pair, given back with "
                                                   "its prediction.", examples=["claim-17"])

    @field_validator("id", mode="before")
    @classmethod
    def _name_or_number(cls, value: object) -> object:
        """A string or an integer, given back as it came (not true → 1, nor 1.5 → an error per type)."""
        problem = id_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("premise", "hypothesis")
    @classmethod
    def _readable(cls, text: str) -> str:
        if is_blank(text):
            raise ValueError("must not be empty or blank")
        problem = surrogate_problem(text)
        if problem:
            raise ValueError(problem)
        return text


class PredictRequest(BaseModel):
    """Pairs to classify; the server's limits on their number and length are at ``GET /model``."""

    model_config = ConfigDict(extra="forbid",  # pydantic types JSON as invariant lists and dicts of JsonValue:
                              json_schema_extra={"examples": [{"pairs": EXAMPLE_PAIRS}]})  # type: ignore[dict-item]

    pairs: list[Pair] = Field(min_length=1, description="One or more pairs, answered in the same order.")


class PredictionOut(BaseModel):
    id: str | int | None = Field(None, description="The pair's id, when the request gave one.")
    label: str = Field(description="The most probable label.", examples=["entailment"])
    probabilities: dict[str, float] = Field(
        description="The probability of every label.",
        examples=[{"entailment": 0.91, "neutral": 0.07, "contradiction": 0.02}],
    )
    truncated: bool = Field(description="The pair was longer than the model's max_len tokens and was read cut "
                                        "(the end of the longer text first).", examples=[False])


class PredictResponse(BaseModel):
    predictions: list[PredictionOut] = Field(description="One prediction per pair, in the request's order.")
    model: str = Field(description="The name of the model that answered.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Limits(BaseModel):
    max_pairs: int = Field(description="Pairs allowed in one request.")
    max_chars: int = Field(description="Characters allowed in one premise or hypothesis.")
    max_batch_pairs: int = Field(description="Pairs from concurrent requests run together in one model call.")
    max_wait_ms: float = Field(description="How long a request may wait for others to share its model call.")


class ModelInfo(BaseModel):
    name: str
    labels: list[str] = Field(description="Label names, in the order of the model's outputs.")
    max_len: int = Field(description="Longest packed pair in tokens; longer pairs are truncated.")
    parameters: int = Field(description="Number of parameters of the network.")
    device: str
    precision: str = Field(description="fp32, or the autocast precision (bf16, fp16) the model runs in.")
    version: str = Field(description="The bertnli version serving it.")
    config: dict[str, Any] = Field(description="The network's architecture.")
    limits: Limits


class ErrorItem(BaseModel):
    location: str = Field(examples=["pairs[0].premise"])
    message: str = Field(examples=["Field required"])


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in one line.")
    errors: list[ErrorItem] | None = Field(default=None, description="Each invalid field (validation errors).")
