"""Dense day x series matrices of the cost history: what detection computes on.

Two levels of the same days: one column per service (its groups summed in whole
nano-dollars, so a total never depends on the order or number of groups added) and one
per (service, group). Days run down the rows so one day across all series is contiguous,
which is what the EWM recursion walks.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000
# Rows of the history handled at a time while building matrices, and series evaluated at a
# time: both bound the temporaries (about block x days x 8 bytes) for 100,000 series.
ROW_CHUNK = 1 << 21
# Service sums are exact in whole nano-dollars up to this daily cost (int64 holds 9.2e18).
NANOS_PER_USD = 1e9
EXACT_SUM_LIMIT_USD = 9e9


@dataclass(frozen=True)
class SeriesMatrix:
    """Daily costs of many series on consecutive days: `values[t, s]` is series s on
    `days[t]`, 0.0 where there was no row.

    Days run down the rows so one day across all series is contiguous, which is what
    the EWM recursion walks. `groups` holds None for every series of the service level.
    """

    days: pd.DatetimeIndex
    services: np.ndarray
    groups: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class SeriesMatrices:
    """The service level and the (service, group) level of the same days.

    `parent[j]` is the column of group-series j's service in `service.values`.
    """

    service: SeriesMatrix
    group: SeriesMatrix
    parent: np.ndarray


def _codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the names they stand for; free for categorical columns."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categorical = column.array
    else:
        # Via a Categorical the codes are as narrow as the number of names allows, not
        # 8 bytes a row: that matters with tens of millions of rows.
        categorical = pd.Categorical(column.to_numpy())
    codes = np.asarray(categorical.codes)
    names = np.asarray(categorical.categories, dtype=object)
    if len(codes) and codes.min() < 0:
        raise ValueError(f"history column {column.name!r} has missing values")
    return codes, names


def build_matrices(
    history: pd.DataFrame, first_day: dt.date, last_day: dt.date
) -> SeriesMatrices:
    """Dense day x series matrices of `history` for the days first_day..last_day.

    Rows outside the range are ignored; duplicate rows of one (day, service, group) add up.
    Only (service, group) pairs with at least one row in the range get a column. The work
    is a few passes of numpy over the rows in chunks, so memory stays near the size of the
    output matrix whatever the number of rows.
    """
    days = pd.date_range(pd.Timestamp(first_day), pd.Timestamp(last_day), freq="D")
    n_days = len(days)
    first_ns, last_ns = days[0].value, days[-1].value
    dates = history["usage_date"].to_numpy().astype("datetime64[ns]", copy=False).view(np.int64)
    amounts = history["amount"].to_numpy(dtype=np.float64)
    svc_codes, svc_names = _codes(history["service"])
    grp_codes, grp_names = _codes(history["group_value"])
    n_grp = max(len(grp_names), 1)
    n_pair_space = len(svc_names) * n_grp

    def chunks():
        for lo in range(0, len(dates), ROW_CHUNK):
            hi = lo + ROW_CHUNK
            d = dates[lo:hi]
            inside = (d >= first_ns) & (d <= last_ns)
            pair = svc_codes[lo:hi][inside].astype(np.int64) * n_grp
            pair += grp_codes[lo:hi][inside]
            yield d[inside], pair, amounts[lo:hi][inside]

    # Pass 1: which (service, group) pairs occur, in (service, group) order.
    dense = n_pair_space <= (1 << 24)
    if dense:
        present = np.zeros(n_pair_space, dtype=bool)
        for _, pair, _ in chunks():
            present[pair] = True
        pairs = np.flatnonzero(present)
        column_of = np.cumsum(present, dtype=np.int64) - 1
        del present
    else:
        pairs = np.unique(np.concatenate([np.unique(p) for _, p, _ in chunks()] or [[]]))
        pairs = pairs.astype(np.int64)
    n_pairs = len(pairs)

    # Pass 2: add every row into its cell.
    flat = np.zeros(n_days * n_pairs, dtype=np.float64)
    for d, pair, amount in chunks():
        col = column_of[pair] if dense else np.searchsorted(pairs, pair)
        col += ((d - first_ns) // DAY_NS) * n_pairs
        np.add.at(flat, col, amount)
    group_values = flat.reshape(n_days, n_pairs)

    pair_svc = pairs // n_grp
    pair_grp = pairs % n_grp
    services_present, parent = np.unique(pair_svc, return_inverse=True)
    col_starts = np.flatnonzero(np.r_[True, pair_svc[1:] != pair_svc[:-1]]) if n_pairs else []
    if n_pairs:
        service_values = _service_sums(group_values, col_starts)
    else:
        service_values = np.zeros((n_days, 0))
    service = SeriesMatrix(
        days=days,
        services=svc_names[services_present] if n_pairs else np.empty(0, dtype=object),
        groups=np.full(len(services_present), None, dtype=object),
        values=service_values,
    )
    group = SeriesMatrix(
        days=days,
        services=svc_names[pair_svc] if n_pairs else np.empty(0, dtype=object),
        groups=grp_names[pair_grp] if n_pairs else np.empty(0, dtype=object),
        values=group_values,
    )
    return SeriesMatrices(service=service, group=group, parent=parent.astype(np.int64))


def _service_sums(group_values: np.ndarray, col_starts: np.ndarray) -> np.ndarray:
    """Each service's daily cost: the sum of its group columns, in whole nano-dollars.

    Summing integers makes the result independent of the order and the number of the
    columns added. That matters for a backtest: its matrices span more days, so a service
    can have columns for groups that have no cost in a given day's window (zeros), and
    a float sum with them (numpy adds long runs pairwise) could differ in the last bit
    from a normal run's, and a threshold decision with it. A service spending over
    $9 billion a day (which would overflow) falls back to float sums.
    """
    n_days = group_values.shape[0]
    out = np.empty((n_days, len(col_starts)))
    rows = max(1, ROW_CHUNK // max(group_values.shape[1], 1))
    for lo in range(0, n_days, rows):
        block = group_values[lo:lo + rows]
        if np.abs(block).sum(axis=1).max(initial=0.0) < EXACT_SUM_LIMIT_USD:
            nanos = np.rint(block * NANOS_PER_USD).astype(np.int64)
            out[lo:lo + rows] = np.add.reduceat(nanos, col_starts, axis=1) / NANOS_PER_USD
        else:
            log.warning("a day costs over $%.0f in all: summing service costs as floats",
                        EXACT_SUM_LIMIT_USD)
            out[lo:lo + rows] = np.add.reduceat(block, col_starts, axis=1)
    return out
