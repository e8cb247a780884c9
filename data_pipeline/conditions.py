"""Condition columns: the values that become control tokens before each document's text.

CONFIG's `condition_columns` names CSV columns (a date column may be bucketed: "publish_date:year").
Each document is read with one value per column; the tokenizer gets one special token per value
seen in train (`<category=computers>`) plus one unknown token per column (`<category=?>`) for
values first met in validation, test or a missing field. Only reading and naming live here; the
tokenizer owns the ids and datasets.py masks their targets.
"""

from __future__ import annotations

import collections
from typing import Mapping, Sequence

import pandas as pd

from data_pipeline.config import DATE_BUCKETS
from data_pipeline.errors import DataError

UNKNOWN_VALUE = "?"
Conditions = tuple[str, ...]  # one value per condition column, in CONFIG's order


def condition_token(column: str, value: str) -> str:
    return f"<{column}={value}>"


def parse_condition_token(token: str) -> tuple[str, str]:
    """(column, value) of a token made by condition_token."""
    column, _, value = token[1:-1].partition("=")
    return column, value


def read_condition_columns(frame: pd.DataFrame, columns: Sequence[str],
                           source: str) -> list[Conditions]:
    """One tuple of values per row; a missing field reads as the unknown value."""
    present = [str(column) for column in frame.columns]
    per_column = []
    for spec in columns:
        column, _, bucket = spec.partition(":")
        if column not in frame.columns:
            raise DataError(f"data_file {source!r} has no column {column!r} named in "
                            f"condition_columns; its columns are {present}: fix "
                            "CONFIG['condition_columns']")
        values = frame[column].fillna("").astype(str).str.strip()
        if bucket:
            values = _bucketed_dates(values, spec, source)
        per_column.append(values.where(values != "", UNKNOWN_VALUE).tolist())
    return list(zip(*per_column)) if per_column else [()] * len(frame)


def condition_vocabulary(columns: Sequence[str], train: Sequence[Conditions]) -> list[str]:
    """Tokens for the train values: per column its unknown token, then its values sorted."""
    tokens = []
    for position, column in enumerate(columns):
        values = sorted({conditions[position] for conditions in train} - {UNKNOWN_VALUE})
        tokens += [condition_token(column, value) for value in [UNKNOWN_VALUE, *values]]
    return tokens


def known_values(tokens: Sequence[str]) -> dict[str, list[str]]:
    """Column -> its train values (unknown excluded), in token order, from condition tokens."""
    known: dict[str, list[str]] = collections.defaultdict(list)
    for token in tokens:
        column, value = parse_condition_token(token)
        known.setdefault(column, [])
        if value != UNKNOWN_VALUE:
            known[column].append(value)
    return dict(known)


def check_generation_conditions(conditions: Mapping[str, str] | None,
                                known: Mapping[str, Sequence[str]]) -> None:
    """A one-line DataError unless `conditions` gives a known value for exactly the known columns."""
    given = dict(conditions or {})
    if not known:
        if given:
            raise DataError(f"conditions {given} given, but the model was trained without "
                            "condition_columns: leave conditions out")
        return
    for column in given:
        if column not in known:
            raise DataError(f"condition column {column!r} is unknown: the model was trained with "
                            f"condition_columns {list(known)}")
    for column, values in known.items():
        if column not in given:
            raise DataError(f"the model was trained with condition_columns {list(known)}: pass "
                            f"a value for {column!r}, one of {values}")
        if str(given[column]) not in values:
            raise DataError(f"condition {column}={given[column]!r} was not seen in training; "
                            f"known values of {column!r}: {values}")


def _bucketed_dates(values: pd.Series, spec: str, source: str) -> pd.Series:
    column, _, bucket = spec.partition(":")
    # Compact YYYYMMDD (e.g. publish_date) is tried first, as for the chronological split.
    parsed = pd.to_datetime(values, format="%Y%m%d", errors="coerce")
    if parsed[values != ""].isna().any():
        parsed = pd.to_datetime(values, format="mixed", errors="coerce")
    bad = values[parsed.isna() & (values != "")]
    if len(bad):
        raise DataError(f"condition column {spec!r} of data_file {source!r} has {len(bad)} values "
                        f"that are not dates (first: {bad.iloc[0]!r}): fix them or drop "
                        f"':{bucket}' from CONFIG['condition_columns']")
    return parsed.dt.strftime(DATE_BUCKETS[bucket]).fillna("")
