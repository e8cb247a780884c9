"""Condition columns: the values that become control tokens before each document's text.

CONFIG's `condition_columns` names CSV columns (a date column may be bucketed: "publish_date:year";
a numeric one cut at quantiles: "price:quantiles5"). Each document is read with one value per
column; the tokenizer gets one special token per value seen in train (`<category=computers>`)
plus one unknown token per column (`<category=?>`) for values first met in validation, test or a
missing field. A numeric column is read as numbers first and bucketed after the split, with edges
fitted on the training split only (`bucket_numeric_conditions`): values `q1` .. `qN`, values
outside the training range in the end buckets. Only reading and naming live here; the tokenizer
owns the ids (and keeps the edges) and datasets.py masks their targets.
"""

from __future__ import annotations

import collections
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from data_pipeline.config import DATE_BUCKETS, quantile_count
from data_pipeline.errors import DataError

UNKNOWN_VALUE = "?"
Conditions = tuple[str, ...]  # one value per condition column, in CONFIG's order
BucketEdges = dict[str, list[float]]  # numeric condition column -> its N-1 inner bucket edges


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
        if quantile_count(bucket):
            _check_numbers(values, spec, source)  # bucketed after the split, on train's quantiles
        elif bucket:
            values = _bucketed_dates(values, spec, source)
        per_column.append(values.where(values != "", UNKNOWN_VALUE).tolist())
    return list(zip(*per_column)) if per_column else [()] * len(frame)


def bucket_numeric_conditions(columns: Sequence[str],
                              splits: Sequence[Sequence[Conditions]]
                              ) -> tuple[list[list[Conditions]], BucketEdges]:
    """Numeric columns ("price:quantiles5") of every split replaced by bucket labels q1..qN, the
    edges at quantiles of the first split's (train's) values; (the splits, column -> edges)."""
    splits = [list(split) for split in splits]
    edges: BucketEdges = {}
    for position, spec in enumerate(columns):
        count = quantile_count(spec.partition(":")[2])
        if not count:
            continue
        train = np.array([float(c[position]) for c in splits[0] if c[position] != UNKNOWN_VALUE])
        distinct = len(np.unique(train))
        if distinct < count:
            fewer = (f"ask for at most {distinct} ('{spec.partition(':')[0]}:quantiles{distinct}') "
                     "or " if distinct >= 2 else "")
            raise DataError(f"condition column {spec!r} has {distinct} distinct values in the "
                            f"training split, fewer than its {count} buckets: {fewer}use the "
                            "column unbucketed")
        edges[spec] = np.quantile(train, np.arange(1, count) / count).tolist()
        splits = [[_with_bucket(c, position, edges[spec]) for c in split] for split in splits]
    return splits, edges


def bucket_label(value: float, edges: Sequence[float]) -> str:
    """q1 .. qN: the bucket of `value`; below the first edge q1, from the last edge on qN."""
    return f"q{int(np.searchsorted(edges, value, side='right')) + 1}"


def bucket_ranges(edges: Sequence[float]) -> list[str]:
    """What each bucket holds, for condition lists: ["q1 (< 3.5)", "q2 (3.5 to 7)", "q3 (>= 7)"]."""
    # positional, 4 decimals at most: a date kept as a number (20030316) reads in full
    shown = [np.format_float_positional(edge, precision=4, trim="-") for edge in edges]
    ranges = [f"< {shown[0]}", *[f"{a} to {b}" for a, b in zip(shown, shown[1:])], f">= {shown[-1]}"]
    return [f"q{i} ({text})" for i, text in enumerate(ranges, start=1)]


def describe_conditions(known: Mapping[str, Sequence[str]], edges: Mapping[str, Sequence[float]]
                        ) -> dict[str, list[str]]:
    """Column -> its values as a condition list shows them: a bucket with its range."""
    described = {}
    for column, values in known.items():
        ranges = {f"q{i}": text for i, text in
                  enumerate(bucket_ranges(edges[column]) if column in edges else [], start=1)}
        described[column] = [ranges.get(value, value) for value in values]
    return described


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


def resolve_buckets(conditions: Mapping[str, str] | None,
                    edges: Mapping[str, Sequence[float]]) -> dict[str, str] | None:
    """`conditions` with a number given for a bucketed column replaced by its bucket (price=12.5
    -> q2), so generation takes a value as well as a bucket name."""
    if conditions is None:
        return None
    resolved = {}
    for column, value in conditions.items():
        number = pd.to_numeric(str(value), errors="coerce")
        resolved[column] = (bucket_label(float(number), edges[column])
                            if column in edges and not pd.isna(number) else str(value))
    return resolved


def check_generation_conditions(conditions: Mapping[str, str] | None,
                                known: Mapping[str, Sequence[str]],
                                edges: Mapping[str, Sequence[float]] | None = None) -> None:
    """A one-line DataError unless `conditions` gives a known value for exactly the known columns;
    the messages show bucketed columns' values with their ranges (`edges`)."""
    given = dict(conditions or {})
    shown = describe_conditions(known, edges or {})
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
                            f"a value for {column!r}, one of {shown[column]}")
        if str(given[column]) not in values:
            raise DataError(f"condition {column}={given[column]!r} was not seen in training; "
                            f"known values of {column!r}: {shown[column]}")


def _with_bucket(conditions: Conditions, position: int, edges: Sequence[float]) -> Conditions:
    value = conditions[position]
    label = value if value == UNKNOWN_VALUE else bucket_label(float(value), edges)
    return (*conditions[:position], label, *conditions[position + 1:])


def _check_numbers(values: pd.Series, spec: str, source: str) -> None:
    """A one-line DataError naming the first non-numeric value of a numeric column and its line."""
    numbers = pd.to_numeric(values.where(values != ""), errors="coerce")
    bad = values[numbers.isna() & (values != "")]
    if len(bad):
        row = bad.index[0] + 1 if isinstance(bad.index[0], (int, np.integer)) else bad.index[0]
        raise DataError(f"condition column {spec!r} of data_file {source!r} is declared numeric "
                        f"but data row {row} holds {bad.iloc[0]!r} ({len(bad)} such values): fix "
                        f"them, or drop ':{spec.partition(':')[2]}' to use the values as they are")


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
