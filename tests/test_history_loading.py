"""load_history's fast paths give the frame the plain SQLAlchemy path gives."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from _util.store import cost_store
from _util.store.cost_store import CostRow, SourceState, load_history, replace_days

DAY = dt.date(2026, 3, 31)


def _fill(engine) -> None:
    rows = [CostRow(DAY - dt.timedelta(days=d), f"Service ‘{s}’ <&>", ["", "web", "日本"][g],
                    round(1.0 + 0.37 * d * (s + 1) + g, 10), "USD", d < 2)
            for d in range(40) for s in range(3) for g in range(3) if (d + s + g) % 5]
    state = SourceState("demo", "TAG:Name", "Credit,Refund", DAY - dt.timedelta(days=39), DAY,
                        DAY - dt.timedelta(days=1))
    replace_days(engine, "UnblendedCost", DAY - dt.timedelta(days=39), DAY, rows, state)


def test_driver_rows_and_sqlalchemy_rows_load_the_same_frame_in_small_chunks(db_engine, monkeypatch):
    _fill(db_engine)
    start = DAY - dt.timedelta(days=30)
    monkeypatch.setattr(cost_store, "LOAD_CHUNK_ROWS", 7)  # many chunks, names spread over them
    fast = load_history(db_engine, "UnblendedCost", start, DAY)
    monkeypatch.setattr(db_engine.dialect, "driver", "some-other-driver")
    plain = load_history(db_engine, "UnblendedCost", start, DAY)
    assert len(fast) > 7 * 10
    assert fast.equals(plain)
    assert list(fast["service"].cat.categories) == sorted(set(fast["service"]))
    assert fast["usage_date"].min() == pd.Timestamp(start) and fast["estimated"].sum() > 0


def test_an_empty_window_loads_an_empty_frame_with_the_history_columns(db_engine):
    _fill(db_engine)
    empty = load_history(db_engine, "UnblendedCost", dt.date(2020, 1, 1), dt.date(2020, 1, 31))
    assert empty.empty
    assert list(empty.columns) == cost_store.HISTORY_COLUMNS
    assert str(empty["usage_date"].dtype) == "datetime64[ns]"
    assert str(empty["service"].dtype) == "category"
