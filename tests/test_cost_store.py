"""The cost_daily table on a real SQLite file and, when configured, the real MariaDB."""
from __future__ import annotations

import datetime as dt

import pytest

from _util.errors import StoreError
from _util.store import cost_store
from _util.store.cost_store import (
    CostRow,
    SourceState,
    count_rows,
    load_history,
    load_services_history,
    read_source_state,
    replace_days,
    stored_names,
    stored_rows_by_service,
)

D = dt.date
METRIC = "UnblendedCost"


def _state(first=D(2026, 1, 1), last=D(2026, 1, 3)) -> SourceState:
    return SourceState("aws", "TAG:Name", "Credit,Refund", first, last, None)


def _rows(amount: float = 1.0) -> list[CostRow]:
    return [CostRow(D(2026, 1, d), svc, grp, amount * d, "USD", False)
            for d in (1, 2, 3) for svc in ("EC2", "S3") for grp in ("web", "")]


def _stored(engine) -> dict:
    frame = load_history(engine, METRIC, D(2025, 1, 1), D(2027, 1, 1))
    return {(r.usage_date.date(), r.service, r.group_value): r.amount for r in frame.itertuples()}


def test_replacing_the_same_days_twice_never_duplicates_rows(db_engine):
    for _ in range(3):
        replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), _rows(), _state())
    assert count_rows(db_engine) == 12
    assert read_source_state(db_engine, METRIC) == _state()


def test_a_revised_amount_replaces_the_old_one_and_a_vanished_group_is_gone(db_engine):
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), _rows(), _state())
    revised = [r for r in _rows(amount=2.0) if not (r.usage_date == D(2026, 1, 3) and r.group_value == "")]
    replace_days(db_engine, METRIC, D(2026, 1, 3), D(2026, 1, 3),
                 [r for r in revised if r.usage_date == D(2026, 1, 3)], _state())
    stored = _stored(db_engine)
    assert stored[(D(2026, 1, 3), "EC2", "web")] == 6.0
    assert (D(2026, 1, 3), "EC2", "") not in stored
    assert stored[(D(2026, 1, 1), "EC2", "")] == 1.0  # days outside the range are untouched


def test_a_failure_mid_write_leaves_the_previous_state(db_engine):
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), _rows(), _state())
    before = _stored(db_engine)
    broken = _rows(amount=5.0) + [CostRow(D(2026, 1, 2), "EC2", "web", 1.0, "USD", False)]  # duplicate key
    with pytest.raises(StoreError):
        replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), broken,
                     _state(last=D(2026, 1, 9)))
    assert _stored(db_engine) == before
    assert read_source_state(db_engine, METRIC).last_day == D(2026, 1, 3)


def _store_with_another_metric(engine) -> None:
    """_rows() under METRIC, and a service of its own under another metric."""
    replace_days(engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), _rows(), _state())
    replace_days(engine, "AmortizedCost", D(2026, 1, 1), D(2026, 1, 3),
                 [CostRow(D(2026, 1, 2), "Lambda", "", 9.0, "USD", True)], _state())


def _tuples(frame) -> list[tuple]:
    return sorted((r.usage_date, str(r.service), str(r.group_value), r.amount, r.estimated)
                  for r in frame.itertuples())


def test_some_services_history_is_load_history_of_those_services_in_the_days_asked(
        db_engine, monkeypatch):
    _store_with_another_metric(db_engine)
    monkeypatch.setattr(cost_store, "SERVICES_PER_QUERY", 1)
    some = load_services_history(db_engine, METRIC, D(2026, 1, 2), D(2026, 1, 3),
                                 ["S3", "Lambda", "EC2"])
    whole = load_history(db_engine, METRIC, D(2026, 1, 2), D(2026, 1, 3))
    assert _tuples(some) == _tuples(whole) and len(some) == 8
    assert list(some.columns) == list(whole.columns)
    assert list(some.dtypes.astype(str)) == list(whole.dtypes.astype(str))
    only_s3 = load_services_history(db_engine, METRIC, D(2026, 1, 2), D(2026, 1, 3), ["S3"])
    assert _tuples(only_s3) == _tuples(whole[whole["service"] == "S3"])
    assert load_services_history(db_engine, METRIC, D(2026, 1, 2), D(2026, 1, 3), []).empty


def test_row_counts_and_names_are_of_the_metric_and_days_asked(db_engine):
    _store_with_another_metric(db_engine)
    assert stored_rows_by_service(db_engine, METRIC, D(2026, 1, 2), D(2026, 1, 3)) == {
        "EC2": 4, "S3": 4}
    assert stored_names(db_engine, METRIC, D(2026, 1, 3), D(2026, 1, 9)) == {
        ("EC2", "web"), ("EC2", ""), ("S3", "web"), ("S3", "")}
    assert stored_names(db_engine, METRIC, D(2026, 1, 4), D(2026, 1, 9)) == set()


def test_names_are_stored_intact_any_unicode_long_and_case_sensitive(db_engine):
    names = ["web", "Web", "日本語-チーム", "emoji 🚀 & <b>\"quotes\"</b>", "x" * 256, "a/b\\c"]
    rows = [CostRow(D(2026, 1, 1), "Amazon Elastic Compute Cloud - Compute ü", n, float(i), "USD", False)
            for i, n in enumerate(names)]
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 1), rows, _state())
    stored = _stored(db_engine)
    assert sorted(g for (_, _, g) in stored) == sorted(names)
    assert stored[(D(2026, 1, 1), "Amazon Elastic Compute Cloud - Compute ü", "Web")] == 1.0


def test_names_differing_only_by_trailing_spaces_stay_two_groups(db_engine):
    """MySQL's utf8mb4_bin pads with spaces: 'web ' would collide with 'web' in the key and
    stop the whole fetch. The columns use the server's NO PAD binary collation."""
    names = ["web", "web ", "web  ", " web"]
    rows = [CostRow(D(2026, 1, 1), "EC2", n, float(i + 1), "USD", False) for i, n in enumerate(names)]
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 1), rows, _state())
    stored = _stored(db_engine)
    assert {g: usd for (_, _, g), usd in stored.items()} == {"web": 1.0, "web ": 2.0, "web  ": 3.0,
                                                            " web": 4.0}


def test_amounts_keep_cost_explorer_precision(db_engine):
    rows = [CostRow(D(2026, 1, 1), "EC2", "", 0.0000012345, "USD", True),
            CostRow(D(2026, 1, 2), "EC2", "", 123456789.1234567891, "USD", False)]
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 2), rows, _state())
    frame = load_history(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 2)).sort_values("usage_date")
    assert frame["amount"].tolist() == pytest.approx([0.0000012345, 123456789.1234567891], rel=1e-12)
    assert frame["estimated"].tolist() == [True, False]
    assert str(frame["usage_date"].dtype) == "datetime64[ns]"


def test_wiping_a_metric_removes_rows_outside_the_new_range(db_engine):
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), _rows(), _state())
    replace_days(db_engine, METRIC, D(2026, 1, 3), D(2026, 1, 3), _rows()[-4:], _state(), wipe_metric=True)
    assert count_rows(db_engine) == 4


def test_a_table_made_with_the_padding_collation_is_upgraded_and_keeps_its_rows(mariadb_engine):
    """Databases created before the NO PAD collation get it on the next start."""
    import sqlalchemy as sa

    from _util.store.database import binary_collation, create_tables

    replace_days(mariadb_engine, METRIC, D(2026, 1, 1), D(2026, 1, 1),
                 [CostRow(D(2026, 1, 1), "EC2", "web", 1.0, "USD", False)], _state())
    with mariadb_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE cost_daily MODIFY service VARCHAR(320) CHARACTER SET "
                             "utf8mb4 COLLATE utf8mb4_bin NOT NULL, MODIFY group_value "
                             "VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"))

    create_tables(mariadb_engine)

    with mariadb_engine.connect() as conn:
        collations = set(conn.execute(sa.text(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = 'cost_daily' AND COLUMN_NAME IN "
            "('service', 'group_value')")).scalars())
    assert collations == {binary_collation(mariadb_engine.dialect)}
    replace_days(mariadb_engine, METRIC, D(2026, 1, 2), D(2026, 1, 2),
                 [CostRow(D(2026, 1, 2), "EC2", g, 2.0, "USD", False) for g in ("web", "web ")],
                 _state(last=D(2026, 1, 2)))
    assert sorted(_stored(mariadb_engine).items()) == [
        ((D(2026, 1, 1), "EC2", "web"), 1.0), ((D(2026, 1, 2), "EC2", "web"), 2.0),
        ((D(2026, 1, 2), "EC2", "web "), 2.0)]


def test_without_the_alter_privilege_the_upgrade_is_logged_and_the_run_goes_on(mariadb_engine, caplog):
    import sqlalchemy as sa

    from _util.store.database import create_tables, make_engine

    with mariadb_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE cost_daily MODIFY group_value VARCHAR(256) CHARACTER SET "
                             "utf8mb4 COLLATE utf8mb4_bin NOT NULL"))
        conn.execute(sa.text("DROP USER IF EXISTS 'costbot_test'@'%'"))
        conn.execute(sa.text("CREATE USER 'costbot_test'@'%' IDENTIFIED BY 'pw'"))
        # The README's grant: no ALTER.
        conn.execute(sa.text("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON "
                             f"{mariadb_engine.url.database}.* TO 'costbot_test'@'%'"))
    limited = make_engine(mariadb_engine.url.set(username="costbot_test", password="pw")
                          .render_as_string(hide_password=False))
    try:
        with caplog.at_level("WARNING", logger="_util.store.database"):
            create_tables(limited)
        replace_days(limited, METRIC, D(2026, 1, 1), D(2026, 1, 1),
                     [CostRow(D(2026, 1, 1), "EC2", "web", 1.0, "USD", False)], _state())
    finally:
        limited.dispose()
        with mariadb_engine.begin() as conn:
            conn.execute(sa.text("DROP USER IF EXISTS 'costbot_test'@'%'"))
    assert "run as an administrator: ALTER TABLE cost_daily MODIFY group_value" in caplog.text
    assert _stored(mariadb_engine) == {(D(2026, 1, 1), "EC2", "web"): 1.0}


def test_a_table_of_ours_with_another_shape_is_named_before_any_table_is_made(db_engine):
    import sqlalchemy as sa

    from _util.store.database import create_tables, metadata

    metadata.drop_all(db_engine)
    with db_engine.begin() as conn:  # a cost_daily made by something else
        conn.execute(sa.text("CREATE TABLE cost_daily (id INTEGER PRIMARY KEY, amount FLOAT)"))
    try:
        with pytest.raises(StoreError) as caught:
            create_tables(db_engine)
        line = str(caught.value)
        assert line.startswith("table cost_daily in ") and "exists but has no column(s) " \
            "usage_date, metric, service, group_value" in line
        assert line.endswith("rename or drop it, or set COST_TRACKING_DB_URL to a database of "
                             "the bot's own")
        assert caught.value.exit_code == 2
        assert sa.inspect(db_engine).get_table_names() == ["cost_daily"]
    finally:
        with db_engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE cost_daily"))
        create_tables(db_engine)


def test_a_bill_beyond_1e14_a_day_and_the_longest_tag_value_are_stored_on_both(db_engine):
    # DECIMAL(24,10) held less than 1e14: MariaDB refused such a backfill whole.
    big, tag = 1_234_567_890_123_456.5, "t" * cost_store.GROUP_CHARS
    rows = [CostRow(D(2026, 1, 1), "EC2", tag, big, "USD", False),
            CostRow(D(2026, 1, 1), "EC2", "", -big, "USD", False)]
    replace_days(db_engine, METRIC, D(2026, 1, 1), D(2026, 1, 1), rows, _state(last=D(2026, 1, 1)))
    stored = _stored(db_engine)
    assert stored[(D(2026, 1, 1), "EC2", tag)] == pytest.approx(big, rel=1e-15)
    assert stored[(D(2026, 1, 1), "EC2", "")] == pytest.approx(-big, rel=1e-15)


def test_a_value_beyond_the_columns_is_one_line_naming_day_service_and_group(mariadb_engine):
    replace_days(mariadb_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), _rows(), _state())
    long_group = "g" * (cost_store.GROUP_CHARS + 1)
    bad = [*_rows(), CostRow(D(2026, 1, 2), "S3", long_group, 5.0, "USD", False)]
    with pytest.raises(StoreError) as caught:
        replace_days(mariadb_engine, METRIC, D(2026, 1, 1), D(2026, 1, 3), bad, _state())
    assert str(caught.value).startswith(
        f"cannot store the cost of 2026-01-02, service 'S3', group '{'g' * 80}': a group value "
        f"of 257 characters (the column holds 256, AWS's limit for a tag value); nothing of "
        "the fetch was stored")
    assert count_rows(mariadb_engine) == 12  # the earlier fetch, untouched
    huge = [CostRow(D(2026, 1, 2), "S3", "web", 1e30, "USD", False)]
    with pytest.raises(StoreError, match=r"an amount of 1e\+30 \(the column holds less than 1e\+28\)"):
        replace_days(mariadb_engine, METRIC, D(2026, 1, 2), D(2026, 1, 2), huge, _state())


def test_an_amount_column_made_narrower_by_an_earlier_version_is_widened_once(mariadb_engine):
    import sqlalchemy as sa

    from _util.store.database import create_tables

    precision = sa.text("SELECT NUMERIC_PRECISION FROM information_schema.COLUMNS WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'cost_daily' AND "
                        "COLUMN_NAME = 'amount'")
    with mariadb_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE cost_daily MODIFY amount DECIMAL(24,10) NOT NULL"))
        assert conn.execute(precision).scalar() == 24
    create_tables(mariadb_engine)
    with mariadb_engine.connect() as conn:
        assert conn.execute(precision).scalar() == 38
