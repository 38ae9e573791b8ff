"""Checks shared by the Parquet formats in `tasks` (transition datasets, supervised datasets)."""

from __future__ import annotations

import pyarrow as pa


def column_mismatch(schema: pa.Schema, expected: pa.Schema) -> str | None:
    """The first column of ``expected`` that ``schema`` lacks or types differently, in words; None if all match."""
    for fld in expected:
        if fld.name not in schema.names:
            return f"column {fld.name!r} is missing (expected type {fld.type})"
        found = schema.field(fld.name).type
        if found != fld.type:
            return f"column {fld.name!r} has type {found}, expected {fld.type}"
    return None
