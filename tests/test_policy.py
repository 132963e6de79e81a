"""The refresh policies (``keep_fresh``, ``on_use``), recording use, and capacity in words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection as db_connection
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_lexoffice import policy
from django_lexoffice.conf import settings as lexoffice_settings
from django_lexoffice.models import LexofficeConnection
from django_lexoffice.policy import RefreshPolicy, Rules

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEEP_FRESH = Rules(RefreshPolicy.KEEP_FRESH)
ON_USE = Rules(RefreshPolicy.ON_USE)


@dataclass(frozen=True)
class Row:
    """A connection as the decision sees it, without a database."""

    status: str = "active"
    expires_at: datetime | None = NOW + timedelta(hours=3)
    last_used_at: datetime | None = None
    last_refreshed_at: datetime | None = NOW - timedelta(hours=1)
    created_at: datetime = NOW - timedelta(days=30)
    next_attempt_at: datetime | None = None


EXPIRING = Row(expires_at=NOW + timedelta(minutes=2))


# -- keep_fresh ---------------------------------------------------------------------------------


def test_keep_fresh_refreshes_a_token_expiring_within_the_margin() -> None:
    assert policy.is_due(EXPIRING, KEEP_FRESH, NOW)
    assert not policy.is_due(Row(expires_at=NOW + timedelta(minutes=6)), KEEP_FRESH, NOW)


def test_keep_fresh_refreshes_a_token_of_unknown_expiry() -> None:
    assert policy.is_due(Row(expires_at=None), KEEP_FRESH, NOW)


def test_keep_fresh_keeps_even_a_never_used_connection_fresh() -> None:
    assert policy.is_due(replace(EXPIRING, last_used_at=None), KEEP_FRESH, NOW)


@pytest.mark.parametrize("rules", [KEEP_FRESH, ON_USE])
def test_no_policy_refreshes_during_a_backoff(rules: Rules) -> None:
    backing_off = replace(
        EXPIRING,
        last_used_at=NOW,
        last_refreshed_at=NOW - timedelta(days=30),
        next_attempt_at=NOW + timedelta(minutes=1),
    )

    assert not policy.is_due(backing_off, rules, NOW)
    assert policy.is_due(backing_off, rules, NOW + timedelta(minutes=1))


@pytest.mark.parametrize("rules", [KEEP_FRESH, ON_USE])
@pytest.mark.parametrize("status", ["revoked", "reauthorization_required"])
def test_no_policy_refreshes_a_connection_that_is_not_active(rules: Rules, status: str) -> None:
    row = replace(EXPIRING, status=status, last_used_at=NOW, last_refreshed_at=None)

    assert not policy.is_due(row, rules, NOW)
    assert policy.next_due(row, rules, after=NOW) is None


# -- on_use ------------------------------------------------------------------------------------


def test_on_use_keeps_a_recently_used_connection_fresh() -> None:
    used_yesterday = replace(EXPIRING, last_used_at=NOW - timedelta(days=1))

    assert policy.is_due(used_yesterday, ON_USE, NOW)


def test_on_use_lets_an_idle_connection_expire() -> None:
    used_long_ago = replace(EXPIRING, last_used_at=NOW - timedelta(days=4))

    assert not policy.is_due(used_long_ago, ON_USE, NOW)
    assert not policy.is_due(replace(EXPIRING, last_used_at=None), ON_USE, NOW)


def test_on_use_refreshes_an_idle_connection_once_per_idle_interval() -> None:
    idle = Row(expires_at=NOW - timedelta(days=3), last_refreshed_at=NOW - timedelta(days=7))

    assert policy.is_due(idle, ON_USE, NOW)
    assert not policy.is_due(idle, ON_USE, NOW - timedelta(seconds=1))


def test_on_use_counts_a_never_refreshed_connection_from_its_creation() -> None:
    new = Row(expires_at=NOW - timedelta(days=1), last_refreshed_at=None, created_at=NOW)

    assert not policy.is_due(new, ON_USE, NOW + timedelta(days=6))
    assert policy.is_due(new, ON_USE, NOW + timedelta(days=7))


def test_rules_follow_the_settings(settings: Any) -> None:
    settings.LEXOFFICE_REFRESH_POLICY = "on_use"
    settings.LEXOFFICE_REFRESH_ACTIVE_WINDOW = 1
    settings.LEXOFFICE_IDLE_REFRESH_INTERVAL = timedelta(days=10)
    settings.LEXOFFICE_REFRESH_MARGIN = 600

    assert Rules.from_settings() == Rules(
        RefreshPolicy.ON_USE, timedelta(minutes=10), timedelta(days=1), timedelta(days=10)
    )
    assert Rules.from_settings(margin=60).margin == timedelta(minutes=1)


def test_the_defaults_keep_every_connection_fresh_and_refresh_idle_ones_weekly(
    settings: Any,
) -> None:
    for name in (
        "LEXOFFICE_REFRESH_POLICY",
        "LEXOFFICE_REFRESH_ACTIVE_WINDOW",
        "LEXOFFICE_IDLE_REFRESH_INTERVAL",
    ):
        if hasattr(settings, name):
            delattr(settings, name)

    assert Rules.from_settings() == Rules(
        RefreshPolicy.KEEP_FRESH,
        timedelta(seconds=lexoffice_settings.REFRESH_MARGIN),
        timedelta(days=2),
        timedelta(days=7),
    )


@pytest.mark.parametrize("value", ["sometimes", "", None, "ON_USE"])
def test_an_unknown_policy_says_what_to_write(settings: Any, value: Any) -> None:
    settings.LEXOFFICE_REFRESH_POLICY = value

    with pytest.raises(ImproperlyConfigured, match='"keep_fresh" or "on_use"'):
        Rules.from_settings()


@pytest.mark.parametrize(
    "name", ["LEXOFFICE_REFRESH_ACTIVE_WINDOW", "LEXOFFICE_IDLE_REFRESH_INTERVAL"]
)
@pytest.mark.parametrize("value", [0, -1, "7", timedelta(0), True])
def test_a_bad_interval_says_what_to_write(settings: Any, name: str, value: Any) -> None:
    setattr(settings, name, value)

    with pytest.raises(ImproperlyConfigured, match=f"{name} must be a positive timedelta"):
        Rules.from_settings()


# -- next_due agrees with is_due ---------------------------------------------------------------

offsets = st.one_of(st.none(), st.integers(min_value=-20 * 86400, max_value=20 * 86400))


def _at(seconds: int | None) -> datetime | None:
    return None if seconds is None else NOW + timedelta(seconds=seconds)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(["active", "revoked"]),
    expires=offsets,
    used=offsets,
    refreshed=offsets,
    created=st.integers(min_value=-40 * 86400, max_value=0),
    backoff=offsets,
    policy_name=st.sampled_from(list(RefreshPolicy)),
    later=st.integers(min_value=0, max_value=30 * 86400),
)
def test_next_due_is_the_first_moment_is_due_holds(
    status: str,
    expires: int | None,
    used: int | None,
    refreshed: int | None,
    created: int,
    backoff: int | None,
    policy_name: RefreshPolicy,
    later: int,
) -> None:
    row = Row(status, _at(expires), _at(used), _at(refreshed), NOW + timedelta(seconds=created))
    row = replace(row, next_attempt_at=_at(backoff))
    rules = Rules(policy_name)
    due = policy.next_due(row, rules, after=NOW)

    assert policy.is_due(row, rules, NOW) == (due == NOW)
    if due is None:
        assert not policy.is_due(row, rules, NOW + timedelta(seconds=later))
    else:
        assert due >= NOW
        assert policy.is_due(row, rules, due)
        if due > NOW:
            assert not policy.is_due(row, rules, due - timedelta(microseconds=1))


# -- the database filter agrees with is_due ----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("rules", [KEEP_FRESH, ON_USE], ids=["keep_fresh", "on_use"])
def test_the_queryset_picks_exactly_the_rows_is_due_picks(
    rules: Rules, make_connection: Callable[..., LexofficeConnection]
) -> None:
    now = timezone.now()
    day, minute = timedelta(days=1), timedelta(minutes=1)
    shapes = {
        "fresh, used": {"expires_at": now + day, "last_used_at": now},
        "expiring, used today": {"expires_at": now + minute, "last_used_at": now},
        "expiring, used long ago": {"expires_at": now + minute, "last_used_at": now - 5 * day},
        "expiring, never used": {"expires_at": now + minute},
        "unknown expiry, used": {"expires_at": None, "last_used_at": now - day},
        "expired, idle 8 days": {"expires_at": now - day, "last_refreshed_at": now - 8 * day},
        "expired, idle 2 days": {"expires_at": now - day, "last_refreshed_at": now - 2 * day},
        "backing off": {"expires_at": now + minute, "next_attempt_at": now + minute},
        "revoked": {"expires_at": now + minute, "status": "revoked"},
    }
    for index, (name, fields) in enumerate(shapes.items()):
        fields = {"last_refreshed_at": now - timedelta(hours=3), **fields}
        make_connection(organization_id=f"org-{index}", company_name=name, **fields)
    old = LexofficeConnection.objects.get(company_name="expiring, never used")
    LexofficeConnection.objects.filter(pk=old.pk).update(
        created_at=now - 9 * day, last_refreshed_at=None
    )  # never refreshed, connected 9 days ago

    picked = set(
        policy.due_connections(rules=rules, now=now).values_list("company_name", flat=True)
    )
    decided = {
        row.company_name
        for row in LexofficeConnection.objects.all()
        if policy.is_due(row, rules, now)
    }

    assert picked == decided
    assert "expiring, used today" in picked
    assert ("expiring, used long ago" in picked) is (rules.policy is RefreshPolicy.KEEP_FRESH)
    assert "expiring, never used" in picked  # under on_use: idle for 9 days


@pytest.mark.django_db
def test_due_connections_reads_the_settings(
    settings: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    settings.LEXOFFICE_REFRESH_POLICY = "on_use"
    make_connection(expires_at=timezone.now() + timedelta(minutes=1))  # never used

    assert not policy.due_connections().exists()
    settings.LEXOFFICE_REFRESH_POLICY = "keep_fresh"
    assert policy.due_connections().count() == 1


# -- recording use -----------------------------------------------------------------------------


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Run on-commit callbacks as the test's wrapping transaction would on commit."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.mark.django_db
def test_a_use_is_recorded_once_per_hour_and_connection(
    make_connection: Callable[..., LexofficeConnection], on_commit: Any
) -> None:
    connection = make_connection()
    now = timezone.now()

    with CaptureQueriesContext(db_connection) as first, on_commit():
        assert policy.record_use(connection, now=now)
    with CaptureQueriesContext(db_connection) as again, on_commit():
        assert not policy.record_use(connection, now=now + timedelta(minutes=59))

    assert len(first) == 1 and first[0]["sql"].startswith("UPDATE")
    assert len(again) == 0
    connection.refresh_from_db()
    assert connection.last_used_at == now
    with on_commit():
        assert policy.record_use(connection, now=now + timedelta(minutes=61))
    connection.refresh_from_db()
    assert connection.last_used_at == now + timedelta(minutes=61)


@pytest.mark.django_db
def test_a_second_process_does_not_write_the_same_hour_again(
    make_connection: Callable[..., LexofficeConnection], on_commit: Any
) -> None:
    connection = make_connection()
    other_process_copy = LexofficeConnection.objects.get(pk=connection.pk)
    now = timezone.now()
    with on_commit():
        policy.record_use(connection, now=now)

    with on_commit():
        policy.record_use(other_process_copy, now=now + timedelta(minutes=5))

    assert LexofficeConnection.objects.get(pk=connection.pk).last_used_at == now


@pytest.mark.django_db
def test_recording_use_leaves_updated_at_and_the_tokens_alone(
    make_connection: Callable[..., LexofficeConnection], on_commit: Any
) -> None:
    connection = make_connection()
    before = LexofficeConnection.objects.get(pk=connection.pk)

    with on_commit():
        policy.record_use(connection)

    after = LexofficeConnection.objects.get(pk=connection.pk)
    assert after.last_used_at is not None
    assert after.updated_at == before.updated_at
    assert (after.access_token, after.refresh_token) == (before.access_token, before.refresh_token)


@pytest.mark.django_db(transaction=True)
def test_a_use_inside_the_callers_transaction_is_written_after_it_commits(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    connection = make_connection()

    with transaction.atomic():
        assert policy.record_use(connection)
        assert LexofficeConnection.objects.get(pk=connection.pk).last_used_at is None

    assert LexofficeConnection.objects.get(pk=connection.pk).last_used_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_use_inside_a_transaction_that_rolls_back_is_not_written(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    connection = make_connection()

    with pytest.raises(ZeroDivisionError), transaction.atomic():
        policy.record_use(connection)
        1 / 0

    assert LexofficeConnection.objects.get(pk=connection.pk).last_used_at is None


def test_an_unsaved_connection_records_nothing() -> None:
    assert not policy.record_use(LexofficeConnection())


# -- capacity in words -------------------------------------------------------------------------


def test_capacity_says_the_share_of_the_budget_in_words() -> None:
    capacity = policy.refresh_capacity(1200, rules=KEEP_FRESH, rate=1.8)

    assert str(capacity) == (
        '1,200 connections need 0.09 req/s of 1.8 (5 %) to refresh under "keep_fresh".'
    )
    assert capacity.share == pytest.approx(1200 / 14099 / 1.8)
    assert capacity.warning == ""


def test_capacity_of_one_connection_is_singular() -> None:
    assert str(policy.refresh_capacity(1, rules=KEEP_FRESH, rate=1.8)).startswith(
        "1 connection needs 0.0001 req/s"
    )


def test_capacity_under_keep_fresh_warns_and_names_on_use() -> None:
    capacity = policy.refresh_capacity(20_000, recently_used=2_000, rules=KEEP_FRESH, rate=1.8)

    assert capacity.too_much
    assert 'LEXOFFICE_REFRESH_POLICY = "on_use"' in capacity.warning
    assert "0.17 req/s (10 %)" in capacity.warning
    assert "client id" not in capacity.warning


def test_capacity_beyond_what_on_use_can_do_names_a_second_client() -> None:
    keep_fresh = policy.refresh_capacity(200_000, recently_used=50_000, rules=KEEP_FRESH, rate=1.8)
    on_use = policy.refresh_capacity(200_000, recently_used=50_000, rules=ON_USE, rate=1.8)

    assert '"on_use"' in keep_fresh.warning
    assert "more than one Lexware client id" in keep_fresh.warning
    assert on_use.too_much
    assert 'even under "on_use"' in on_use.warning
    assert "does not support yet" in on_use.warning


def test_capacity_under_on_use_counts_kept_fresh_and_idle_connections() -> None:
    capacity = policy.refresh_capacity(100_000, recently_used=10_000, rules=ON_USE, rate=1.8)

    assert (capacity.kept_fresh, capacity.idle) == (10_000, 90_000)
    assert capacity.needed == pytest.approx(10_000 / 14099 + 90_000 / (7 * 86400))
    assert not capacity.too_much
    assert str(capacity).startswith("100,000 connections need 0.86 req/s of 1.8 (48 %)")


def test_capacity_without_a_count_of_recent_use_assumes_every_connection_used() -> None:
    assert policy.refresh_capacity(10, rules=ON_USE).kept_fresh == 10


def test_capacity_reads_the_budget_and_policy_from_the_settings(settings: Any) -> None:
    settings.LEXOFFICE_RATE_LIMIT = 1.8
    settings.LEXOFFICE_REFRESH_POLICY = "on_use"

    capacity = policy.refresh_capacity(100)

    assert capacity.budget == 1.8
    assert capacity.rules.policy is RefreshPolicy.ON_USE


def test_capacity_speaks_german() -> None:
    with translation.override("de"):
        text = str(policy.refresh_capacity(1200, rules=KEEP_FRESH, rate=1.8))

    assert text.startswith("1.200 Verbindungen brauchen 0,09 Anfragen/s von 1,8 (5 %), um")


@pytest.mark.django_db
def test_current_capacity_counts_active_and_recently_used_connections_in_one_query(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    now = timezone.now()
    make_connection(organization_id="used", last_used_at=now - timedelta(days=1))
    make_connection(organization_id="idle", last_used_at=now - timedelta(days=30))
    make_connection(organization_id="never")
    make_connection(organization_id="gone", status="revoked", last_used_at=now)

    with CaptureQueriesContext(db_connection) as queries:
        capacity = policy.current_capacity(rules=ON_USE, now=now)

    assert len(queries) == 1
    assert (capacity.connections, capacity.kept_fresh, capacity.idle) == (3, 1, 2)


def test_capacity_of_no_connections_needs_nothing() -> None:
    capacity = policy.refresh_capacity(0, rules=ON_USE, rate=1.8)

    assert str(capacity) == '0 connections need 0.0 req/s of 1.8 (0 %) to refresh under "on_use".'
    assert capacity.warning == ""


@pytest.mark.django_db
def test_due_connections_narrows_a_given_queryset(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    soon = timezone.now() + timedelta(minutes=1)
    mine = make_connection(organization_id="mine", expires_at=soon)
    make_connection(organization_id="other", expires_at=soon)

    picked = policy.due_connections(
        LexofficeConnection.objects.filter(organization_id="mine"), rules=KEEP_FRESH
    )

    assert list(picked) == [mine]
