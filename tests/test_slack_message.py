"""The digest's Block Kit message, built from hand-made reports."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.report import (
    Alert,
    DayAmount,
    Headline,
    Report,
    Rules,
    ServiceAmount,
    Summary,
)
from _util.slack.blocks import (
    MAX_BLOCKS,
    clip_mrkdwn,
    escape_mrkdwn,
    money,
    signed_money,
)
from _util.slack.message import SlackMessage, build_message

DAY = dt.date(2024, 5, 14)
SUMMARY_URLS = {"daily_by_service": "https://costs.example.com/reports/2024-05-14/daily.html",
                "mtd_by_service": "https://costs.example.com/reports/2024-05-14/mtd.html"}
REPORT_URL = "https://costs.example.com/reports/2024-05-14/index.html"
TITLES = ["AWS Services Summary", "Upward Trending AWS Services",
          "Downward Trending AWS Services", "Spike up in AWS Services",
          "Spike down in AWS Services"]


def alert(kind: str = SPIKE, direction: str = UP, service: str = "Amazon EC2",
          group: str | None = None, delta: float = 100.0, **extra) -> Alert:
    base = 200.0
    fields = dict(kind=kind, direction=direction, service=service, group=group,
                  usd=base + delta, baseline_mean=base, baseline_std=10.0, delta_usd=delta,
                  zscore=delta / 10.0 if kind == SPIKE else None,
                  plot_url=f"https://costs.example.com/p/{abs(hash((service, group, kind)))}.html")
    fields.update(extra)
    return Alert(**fields)


def report(alerts=(), **extra) -> Report:
    headline = Headline(day_usd=1234.5, prev7_mean_usd=1100.0, mtd_usd=15000.0,
                        prev_mtd_usd=14000.0, projection_usd=33000.0, estimated=False)
    summary = Summary(
        headline=headline,
        mtd_by_service=(ServiceAmount("Amazon EC2", 9000.0), ServiceAmount("Amazon S3", 3000.0)),
        daily_totals=(DayAmount(DAY, 1234.5),),
        daily_by_service=((DAY, "Amazon EC2", 800.0), (DAY, "Amazon S3", 200.0),
                          (DAY - dt.timedelta(days=1), "AWS Lambda", 9999.0)),
    )
    fields = dict(day=DAY, metric="UnblendedCost", group_by="TAG:team", rules=Rules(),
                  summary=summary, alerts=tuple(alerts), page_urls=dict(SUMMARY_URLS),
                  report_url=REPORT_URL)
    fields.update(extra)
    return Report(**fields)


def section_texts(message: SlackMessage) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section"]


def titles(message: SlackMessage) -> list[str]:
    texts = section_texts(message)
    return [t.strip("*") for t in texts if t.strip("*") in TITLES]


def buttons(message: SlackMessage) -> list[dict]:
    return [b["accessory"] for b in message.blocks if "accessory" in b]


def items_of(message: SlackMessage, title: str) -> list[str]:
    """The section texts after a title, up to the next title or the end."""
    texts = section_texts(message)
    start = texts.index(f"*{title}*") + 1
    rest = texts[start:]
    end = next((i for i, t in enumerate(rest) if t.strip("*") in TITLES), len(rest))
    return rest[:end]


def assert_valid_for_slack(message: SlackMessage) -> None:
    """Every block re-parses into slack_sdk's models and passes their limits."""
    assert len(message.blocks) <= MAX_BLOCKS
    assert message.text.strip()
    for block in message.blocks:
        assert Block.parse(block).to_dict() == block
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if "accessory" in block:
            assert len(block["accessory"]["text"]["text"]) <= 75
            assert len(block["accessory"]["url"]) <= 3000
    action_ids = [b["accessory"]["action_id"] for b in message.blocks if "accessory" in b]
    assert len(action_ids) == len(set(action_ids))


def test_sections_follow_the_fixed_order_whatever_the_alert_order():
    alerts = [alert(SPIKE, DOWN, "S", delta=-50), alert(SPIKE, UP, "A"),
              alert(TREND, DOWN, "B", delta=-5), alert(TREND, UP, "C", delta=5)]
    message = build_message(report(alerts))
    assert titles(message) == TITLES
    assert_valid_for_slack(message)


def test_empty_sections_are_left_out():
    message = build_message(report([alert(TREND, DOWN, "Amazon S3", delta=-40)]))
    assert titles(message) == ["AWS Services Summary", "Downward Trending AWS Services"]


def test_items_are_ranked_by_absolute_dollar_change_within_a_section():
    alerts = [alert(service="small", delta=20), alert(service="big drop", delta=-900,
                                                      direction=UP),
              alert(service="medium", delta=300)]
    items = items_of(build_message(report(alerts)), "Spike up in AWS Services")
    assert [t.splitlines()[0] for t in items] == ["*big drop*", "*medium*", "*small*"]


def test_a_day_without_alerts_says_so_in_one_line():
    message = build_message(report([]))
    assert titles(message) == ["AWS Services Summary"]
    assert section_texts(message)[-1] == ("No unusual changes on Tue 14 May 2024: "
                                          "no spikes or trend reversals.")
    assert "no alerts" in message.text


def test_muted_alerts_are_left_out_and_counted_in_the_no_alerts_line():
    message = build_message(report([alert(service="Muted thing", muted=True,
                                          mute_reason="known migration")]))
    assert "Muted thing" not in str(message.blocks)
    assert section_texts(message)[-1].endswith("(1 muted alert left out.)")
    assert "no alerts" in message.text


def test_header_holds_the_date_and_account_label():
    message = build_message(report([]), account_label="Production\nbilling")
    assert message.blocks[0]["type"] == "header"
    assert message.blocks[0]["text"]["text"] == "AWS costs · Tue 14 May 2024 · Production billing"


def test_headline_compares_the_day_month_to_date_and_projection():
    headline = section_texts(build_message(report([])))[0]
    assert "*Total on Tue 14 May 2024:* $1,234.50, +$134.50 (+12.2%) vs the previous 7-day " \
           "mean of $1,100.00" in headline
    assert "*Month to date:* $15,000.00, +$1,000.00 (+7.1%) vs $14,000.00 on the same days " \
           "of April" in headline
    assert "*Month-end projection:* $33,000.00" in headline


def test_context_line_says_when_the_day_is_estimated_or_the_data_stale():
    plain = build_message(report([]))
    context = [b for b in plain.blocks if b["type"] == "context"][0]
    assert "Estimated" not in str(context) and "stale" not in str(context)

    base = report([])
    headline = Headline(**{**base.summary.headline.__dict__, "estimated": True})
    summary = Summary(headline, base.summary.mtd_by_service, base.summary.daily_totals,
                      base.summary.daily_by_service)
    flagged = build_message(report([], summary=summary, stale=True))
    context_text = str([b for b in flagged.blocks if b["type"] == "context"][0])
    assert "2024-05-14 are still Estimated" in context_text
    assert "Cost Explorer could not be reached: data may be stale" in context_text
    assert "data may be stale" in flagged.text


def test_a_partial_day_says_so_first_in_the_headline_and_the_notification():
    base = report([])
    missing = (ServiceAmount("Amazon EC2", 700.0), ServiceAmount("<!channel> *x*", 12.5))
    headline = Headline(**{**base.summary.headline.__dict__, "not_in_yet": missing})
    summary = Summary(headline, base.summary.mtd_by_service, base.summary.daily_totals,
                      base.summary.daily_by_service)
    message = build_message(report([], summary=summary))
    first_line = section_texts(message)[0].splitlines()[0]
    assert first_line == (
        ":warning: *Partial data:* 2 services with costs on each of the 7 days before have "
        "none for Tue 14 May 2024 yet: Amazon EC2 (usually $700.00/day), &lt;!channel&gt; "
        "*x* (usually $12.50/day); the total is likely about $712.50 short.")
    assert "(partial data)" in message.text
    assert "Partial data" not in section_texts(build_message(base))[0]


def test_summary_items_name_top_services_and_link_their_plots():
    message = build_message(report([]))
    daily, mtd = items_of(message, "AWS Services Summary")[:2]
    assert daily.startswith("*Daily Spend x Service*")
    assert "Amazon EC2 $800.00 · Amazon S3 $200.00" in daily
    assert "AWS Lambda" not in daily  # another day's row
    assert mtd.startswith("*Month to Date Spend x Service*")
    assert [b["url"] for b in buttons(message)] == [SUMMARY_URLS["daily_by_service"],
                                                   SUMMARY_URLS["mtd_by_service"]]
    assert {b["text"]["text"] for b in buttons(message)} == {"Plot"}


def test_spike_item_reads_like_a_sentence_and_names_the_driving_group():
    spike = alert(service="Amazon EC2", delta=250.0, zscore=4.23, top_group="team-a",
                  top_group_delta_usd=230.0)
    [item] = items_of(build_message(report([spike])), "Spike up in AWS Services")
    assert item == ("*Amazon EC2*\n"
                    "$450.00 on Tue 14 May 2024, +$250.00 (+125.0%) vs usual $200.00/day\n"
                    "z-score +4.2, driven by team-a (+$230.00)")


def test_trend_item_says_which_way_macd_crossed_its_signal():
    up = alert(TREND, UP, "Amazon RDS", delta=12.0)
    down = alert(TREND, DOWN, "Amazon S3", group="", delta=-8.0)
    message = build_message(report([up, down]))
    [up_item] = items_of(message, "Upward Trending AWS Services")
    [down_item] = items_of(message, "Downward Trending AWS Services")
    assert up_item.endswith("MACD crossed above its 18-day signal")
    assert down_item.startswith("*Amazon S3* › (untagged)\n")
    assert down_item.endswith("MACD crossed below its 18-day signal")


def test_change_without_a_baseline_is_called_new_spend():
    fresh = alert(service="Amazon Bedrock", usd=50.0, baseline_mean=0.0, delta=50.0)
    [item] = items_of(build_message(report([fresh])), "Spike up in AWS Services")
    assert "+$50.00 (new spend) vs usual $0.00/day" in item


def test_group_alerts_under_a_fired_service_are_folded_into_it_not_repeated():
    service = alert(service="Amazon EC2", delta=500, top_group="team-a",
                    top_group_delta_usd=400)
    driver = alert(service="Amazon EC2", group="team-a", delta=400)
    other = alert(service="Amazon EC2", group="team-b", delta=90)
    message = build_message(report([driver, other, service]))
    [item] = items_of(message, "Spike up in AWS Services")
    assert "driven by team-a (+$400.00)" in item
    assert item.endswith("Also flagged in group: team-b")
    assert len(buttons(message)) == 3  # two summaries and the service's plot


def test_group_alert_whose_service_did_not_fire_is_an_item_of_its_own():
    alone = alert(service="Amazon S3", group="team-c", delta=60)
    other_kind = alert(TREND, UP, "Amazon S3", delta=10)
    message = build_message(report([alone, other_kind]))
    [item] = items_of(message, "Spike up in AWS Services")
    assert item.startswith("*Amazon S3* › team-c\n")


def test_no_buttons_without_urls():
    alerts = [alert(service="A", plot_url=None), alert(service="B", plot_url="file:///tmp/b"),
              alert(service="C", plot_url="plots/c.html")]
    many = alerts + [alert(service=f"S{i}", plot_url=None, delta=1 + i) for i in range(60)]
    for message in (build_message(report(alerts, page_urls={}, report_url=None)),
                    build_message(report(many, page_urls={}, report_url=None))):
        assert buttons(message) == []
        assert "<" not in str(section_texts(message))
        assert_valid_for_slack(message)


def test_each_item_with_a_plot_url_has_a_plot_button_to_it():
    spike = alert(service="Amazon EC2", plot_url="https://costs.example.com/p/ec2.html?a=1&b=2")
    message = build_message(report([spike]))
    assert buttons(message)[-1]["url"] == "https://costs.example.com/p/ec2.html?a=1&b=2"
    assert buttons(message)[-1]["text"]["text"] == "Plot"


def test_more_items_than_fit_keep_the_largest_changes_and_end_with_the_full_report():
    alerts = [alert(SPIKE, UP, f"up {i}", delta=float(i + 1)) for i in range(40)]
    alerts += [alert(SPIKE, DOWN, f"down {i}", delta=-float(i + 1) - 0.5) for i in range(40)]
    message = build_message(report(alerts))
    assert len(message.blocks) == MAX_BLOCKS
    assert_valid_for_slack(message)
    kept = [t.splitlines()[0].strip("*") for t in section_texts(message)
            if t.startswith("*up ") or t.startswith("*down ")]
    by_size = sorted(alerts, key=lambda a: abs(a.delta_usd), reverse=True)
    assert sorted(kept) == sorted(a.service for a in by_size[:len(kept)])
    last = message.blocks[-1]
    assert last["text"]["text"] == (f"{80 - len(kept)} smaller alerts did not fit in this "
                                    "message; all are on the full report page.")
    assert last["accessory"]["text"]["text"] == "Full report"
    assert last["accessory"]["url"] == REPORT_URL
    assert "80 new alerts" in message.text


def test_exactly_full_messages_are_not_cut():
    # 8 fixed blocks + 1 title + 41 items = 50.
    alerts = [alert(service=f"svc {i}", delta=float(i + 1)) for i in range(41)]
    message = build_message(report(alerts))
    assert len(message.blocks) == MAX_BLOCKS
    assert "Full report" not in str(message.blocks)
    alerts.append(alert(service="one more", delta=0.5))
    cut = build_message(report(alerts))
    assert len(cut.blocks) == MAX_BLOCKS
    assert "one more" not in str(cut.blocks) and "svc 0" not in str(cut.blocks)
    assert cut.blocks[-1]["text"]["text"].startswith("2 smaller alerts")


HOSTILE = [
    'Tom & Jerry <script>alert("x")</script> \'quoted\'',
    "<!channel> <@U123> <https://evil.example|click>",
    "line one\nline two\r\nthree\ttab",
    "💸 cost 🚀 emoji 👩‍💻",
    "x" * 300,
    "&" * 300,
    "*bold* _it_ ~strike~ `code`",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_escaped_kept_on_one_line_and_clipped(name):
    alerts = [alert(service=name, delta=300, top_group=name, top_group_delta_usd=200.0,
                    top_group_name=name),
              alert(service=name, group=name, delta=100, group_name=name),
              alert(service="other", group=name, delta=50, kind=TREND),
              alert(service=name, direction=DOWN, delta=-70, status="continuing",
                    episode_days=3)]
    message = build_message(report(alerts, metric=name, group_by=name), account_label=name)
    assert_valid_for_slack(message)
    texts = section_texts(message) + [message.text]
    for text in texts:
        without_links = re.sub(r"<https://[^|>]+\|", "", text).replace(">", "")
        assert "<" not in without_links
        assert re.search(r"&(?!amp;|lt;|gt;)", text) is None
    for item in items_of(message, "Spike up in AWS Services"):
        assert len(item.splitlines()) <= 4  # names never add lines
    assert "\n" not in message.blocks[0]["text"]["text"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=400), st.text(max_size=400))
def test_any_service_and_group_name_gives_a_valid_message(service, group):
    alerts = [alert(service=service, delta=10, top_group=group, top_group_delta_usd=5.0,
                    top_group_name=service),
              alert(service=service, group=group, delta=5, kind=TREND, group_name=service),
              alert(service=group, group=service, direction=DOWN, delta=-3, status="continuing",
                    group_name=group)]
    message = build_message(report(alerts), account_label=group)
    assert_valid_for_slack(message)


def test_all_continuing_alerts_are_one_line_per_section_and_said_in_the_headline():
    alerts = [alert(service="Amazon EC2", delta=120, status="continuing", episode_days=4),
              alert(service="Amazon S3", delta=300, status="continuing", episode_days=2,
                    plot_url=None)]
    message = build_message(report(alerts))
    [line] = items_of(message, "Spike up in AWS Services")
    assert line == ("Still elevated: Amazon S3 (day 2, +$300.00/day); "
                    f"<{alerts[0].plot_url}|Amazon EC2> (day 4, +$120.00/day)")
    assert section_texts(message)[0].endswith(
        "No new alerts today; 2 alerts continuing from previous days.")
    assert "0 new alerts, 2 continuing" in message.text


def test_new_alerts_come_before_the_continuing_line_of_their_section():
    alerts = [alert(service="old", delta=900, status="continuing", episode_days=9),
              alert(service="fresh", delta=10)]
    items = items_of(build_message(report(alerts)), "Spike up in AWS Services")
    assert items[0].startswith("*fresh*")
    assert items[1].startswith("Still elevated: <")


def test_payload_carries_channel_text_and_blocks():
    message = build_message(report([alert()]))
    payload = message.payload("C0123456789")
    assert payload == {"channel": "C0123456789", "text": message.text, "blocks": message.blocks}


@pytest.mark.parametrize("value, plain, signed", [
    (0.0, "$0.00", "+$0.00"), (1234.567, "$1,234.57", "+$1,234.57"),
    (-5.5, "-$5.50", "-$5.50"), (float("nan"), "n/a", "n/a"),
])
def test_money_has_two_decimals_and_a_sign_where_asked(value, plain, signed):
    assert money(value) == plain
    assert signed_money(value) == signed


def test_escape_and_clip_never_split_an_entity():
    escaped = escape_mrkdwn("a&b<c>")
    assert escaped == "a&amp;b&lt;c&gt;"
    for limit in range(3, len(escaped) + 1):
        clipped = clip_mrkdwn(escaped, limit)
        assert len(clipped) <= limit
        assert re.search(r"&(?!amp;|lt;|gt;)", clipped) is None


def test_preview_lays_out_header_sections_and_buttons_as_links():
    from _util.slack.preview import preview_page

    spike = alert(service="Amazon EC2", delta=250.0, top_group="team-a",
                  top_group_delta_usd=230.0, plot_url="https://costs.example.com/p/ec2.html?a=1&b=2")
    payload = build_message(report([spike]), account_label="Prod").payload("#costs")
    html = preview_page(payload, DAY, posted=False)
    assert "<title>Slack message for 2024-05-14</title>" in html
    assert "This message was not posted to #costs" in html
    assert '<div class="s-header">AWS costs · Tue 14 May 2024 · Prod</div>' in html
    assert "<strong>Spike up in AWS Services</strong>" in html
    assert '<a class="s-button" href="https://costs.example.com/p/ec2.html?a=1&amp;b=2">Plot</a>' in html
    assert html.count('class="s-button"') == 3
    assert html.count("<hr>") == 2


def test_preview_shows_hostile_names_as_text_never_as_markup():
    from _util.slack.preview import preview_page

    name = '<script>alert("x")</script> & <b>bold</b> <!channel>'
    alerts = [alert(service=name, delta=300),
              alert(service=name, direction=DOWN, delta=-5, status="continuing")]
    payload = build_message(report(alerts), account_label=name).payload("C1")
    html = preview_page(payload, DAY)
    assert "<script>" not in html and "<b>" not in html and "<!channel>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&amp;amp;" not in html  # Slack's escaping is undone before HTML's
    assert f'<a href="{alerts[1].plot_url}">' in html


def test_a_group_that_is_the_whole_service_is_not_mentioned_again():
    service = alert(TREND, UP, "Amazon Route 53", delta=0.08)
    same_series = alert(TREND, UP, "Amazon Route 53", group="", delta=0.08)
    [item] = items_of(build_message(report([service, same_series])),
                      "Upward Trending AWS Services")
    assert "Also flagged" not in item


def test_a_trend_mentions_its_flagged_groups_including_the_largest():
    service = alert(TREND, UP, "Amazon S3", delta=200, top_group="data-lake",
                    top_group_delta_usd=190)
    group = alert(TREND, UP, "Amazon S3", group="data-lake", delta=190)
    [item] = items_of(build_message(report([service, group])), "Upward Trending AWS Services")
    assert "driven by" not in item
    assert item.endswith("Also flagged in group: data-lake")


def test_the_demo_accounts_planted_spike_is_reported_with_its_group():
    from _util.sources.demo_account import demo_history, planted_events
    from procAmzAlerts import detect_alerts
    from procSummaries import summarise

    spikes = [e for e in planted_events(dt.date(2024, 5, 31), 30)
              if e.kind == SPIKE and e.group is not None]
    planted = spikes[-1]
    history = demo_history(planted.day)
    rules = Rules()
    demo = Report(day=planted.day, metric="UnblendedCost", group_by="TAG:team", rules=rules,
                  summary=summarise(history, planted.day),
                  alerts=detect_alerts(history, planted.day, rules))
    message = build_message(demo, account_label="Demo account")
    assert_valid_for_slack(message)
    shown = titles(message)
    assert shown == [t for t in TITLES if t in shown]
    items = items_of(message, "Spike up in AWS Services")
    [item] = [t for t in items if t.splitlines()[0] == f"*{planted.service}*"]
    assert f"driven by {planted.group} (+$" in item
    assert not any(t.startswith(f"*{planted.service}* › {planted.group}") for t in items)
    assert buttons(message) == []  # no site URLs in this report


def test_without_links_gives_a_message_with_no_buttons_or_links():
    from _util.slack.message import without_links

    alerts = [alert(service="A"), alert(service="B", status="continuing")]
    alerts += [alert(service=f"S{i}", delta=1 + i) for i in range(60)]
    linked = build_message(report(alerts))
    assert buttons(linked) and "<https://" in str(section_texts(linked))
    bare = build_message(without_links(report(alerts)))
    assert buttons(bare) == []
    assert "<" not in str(section_texts(bare))
    assert bare.blocks[-1]["text"]["text"].endswith("all are in the report on the site.")


# ---- trend alerts in words, echoes left out (issue 13) --------------------------------

def test_a_trend_item_says_how_far_the_week_moved_from_the_month():
    trend = alert(TREND, UP, "Amazon RDS", delta=12.0, macd=1.0, signal=0.5,
                  mean7=412.0, mean28=378.0)
    [text] = [t for t in section_texts(build_message(report([trend]))) if "Amazon RDS" in t]
    assert "7-day average $412.00/day, 9.0% above the 28-day average ($378.00/day)" in text
    assert "MACD crossed above its 18-day signal" in text


def test_echoes_are_left_out_of_the_digest_and_its_count_of_new_alerts():
    spike = alert(SPIKE, UP, "Amazon EC2", delta=500.0)
    echo = alert(TREND, UP, "Amazon EC2", delta=500.0, mean7=300.0, mean28=210.0,
                 echo_of=DAY)
    news = alert(TREND, DOWN, "Amazon S3", delta=-30.0, mean7=170.0, mean28=200.0)
    message = build_message(report([spike, echo, news]))
    texts = section_texts(message)
    assert "2 new alerts" in message.payload("C1")["text"]
    assert titles(message) == ["AWS Services Summary", "Downward Trending AWS Services",
                               "Spike up in AWS Services"]
    assert not any("Amazon EC2" in t and "MACD" in t for t in texts)
