"""Which columns a snapshot must have and how to type them: from a model's config, or from the data alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from retrain.config import ModelSpec


@dataclass(frozen=True)
class Schema:
    """The columns a snapshot must have and how to type them."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    target: str | None = None
    timestamp: str | None = None
    positive_label: str | None = None
    task: str = "binary"
    # Columns read as text beside the features, not tested or trained on: promotion.segments that are not
    # features.
    extra: tuple[str, ...] = ()

    @classmethod
    def for_model(cls, model: ModelSpec, *, labeled: bool, segments: tuple[str, ...] = ()) -> Schema:
        return cls(
            numeric=model.numeric_features,
            categorical=model.categorical_features,
            target=model.target if labeled else None,
            timestamp=model.timestamp if labeled else None,
            positive_label=model.positive_label if labeled else None,
            task=model.task,
            extra=tuple(c for c in segments if c not in model.features) if labeled else (),
        )

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def columns(self) -> tuple[str, ...]:
        extra = tuple(c for c in (self.target, self.timestamp) if c)
        return (*self.features, *self.extra, *extra)


def infer_schema(arrow_schema: pa.Schema) -> Schema:
    """Type columns from the data alone: numbers and durations are numeric; text, booleans and dictionaries
    categorical; timestamps and dates are skipped."""
    numeric, categorical = [], []
    for column in arrow_schema:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
            categorical.append(column.name)
        elif (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_duration(kind)
        ):
            numeric.append(column.name)
    return Schema(numeric=tuple(numeric), categorical=tuple(categorical))


def untested_columns(arrow_schema: pa.Schema, schema: Schema) -> dict[str, str]:
    """The columns no drift test covers, with their types: a user reading a table of the others should
    know which columns it leaves out."""
    return {column.name: str(column.type) for column in arrow_schema if column.name not in schema.features}
