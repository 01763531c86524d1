"""The console's pure rules: CSRF tokens, the same-origin check, and the create form's fields and errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from howdah.console._charts import DepthLine, depth_line
from howdah.console._forms import (
    by_state,
    extension_list,
    field_errors,
    instance_fields,
    int_bounds,
    message_field,
    parse_settings,
    settings_text,
)
from howdah.console._session import csrf_token, csrf_valid, org_viewed, same_origin
from howdah.console._web import wants_page
from howdah.control.api import InstanceCreate
from howdah.control.spec import ConnectionPooler

SECRET = b"k" * 32


def test_a_csrf_token_is_bound_to_its_session_and_the_secret() -> None:
    token = csrf_token(SECRET, "hwd_a")
    assert csrf_valid(SECRET, "hwd_a", token)
    assert not csrf_valid(SECRET, "hwd_b", token)  # another session's token
    assert not csrf_valid(b"x" * 32, "hwd_a", token)  # another control plane's secret
    assert not csrf_valid(SECRET, "hwd_a", None) and not csrf_valid(SECRET, "hwd_a", "")
    assert "hwd_a" not in token


@pytest.mark.parametrize(
    ("origin", "referer", "expected"),
    [
        ("http://console.test", None, True),
        ("http://CONSOLE.test", None, True),
        ("https://console.test", None, False),  # another scheme is another origin
        ("http://console.test:8081", None, False),
        ("http://evil.test", "http://console.test/instances", False),  # Origin wins over Referer
        (None, "http://console.test/instances/new", True),
        ("null", "http://console.test/x", True),
        (None, "http://console.test.evil.test/", False),
        (None, None, False),
        ("null", None, False),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, expected: bool) -> None:
    assert same_origin(origin, referer, "http", "console.test") is expected


def test_form_fields_become_the_apis_body() -> None:
    body = instance_fields({"name": "db", "stack": "oltp", "cpu": "", "extensions": " vector,pg_trgm  hstore,"})
    assert body == {"name": "db", "stack": "oltp", "extensions": [{"name": "vector"}, {"name": "pg_trgm"},
                                                                  {"name": "hstore"}]}  # fmt: skip
    assert instance_fields({"data_plane": "eu"}) == {"name": "", "data_plane": "eu"}


def test_validation_errors_land_on_their_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        InstanceCreate.model_validate(instance_fields({"name": "Bad_Name", "memory": "lots", "extensions": "x" * 70}))
    errors = field_errors(caught.value)
    assert set(errors) == {"name", "memory", "extensions"}
    assert errors["extensions"].startswith("extension 1:")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("an instance named 'db' already exists in org 'acme'", "name"),
        ("extension 'nope' is not offered by data plane 'local'", "extensions"),
        ("data plane 'eu' does not exist (known: ['local'])", "data_plane"),
        ("memory 64Ti is more than data plane 'local' has", "memory"),
        ("no data plane can take new instances yet", "data_plane"),
        ("something else entirely", "form"),
    ],
)
def test_service_errors_name_their_field(message: str, field: str) -> None:
    assert message_field(message) == field


def test_settings_lines_round_trip_and_bad_lines_are_named() -> None:
    configs = {"work_mem": "64MB", "max_connections": "300"}
    assert parse_settings(settings_text(configs)) == configs
    assert parse_settings("# tuned\n\n  work_mem='4MB'  \n") == {"work_mem": "4MB"}
    with pytest.raises(ValueError, match="line 2: write a setting as name = value"):
        parse_settings("work_mem = 1MB\nshared_buffers")
    with pytest.raises(ValueError, match="line 2: work_mem is set twice"):
        parse_settings("work_mem = 1MB\nwork_mem = 2MB")
    with pytest.raises(ValueError, match="line 1"):
        parse_settings("= 3")


def test_extension_lists() -> None:
    assert extension_list("vector, pg_trgm", "pg_stat_statements") == [
        {"name": "vector"}, {"name": "pg_trgm"}, {"name": "pg_stat_statements", "enabled": False},
    ]  # fmt: skip
    with pytest.raises(ValueError, match="both as enabled and disabled: vector"):
        extension_list("vector", "vector")


def test_states_are_counted_most_first() -> None:
    rows = [{"state": s} for s in ("Up", "Submitted", "Up", "Error", "Submitted", "Up")]
    assert by_state(rows) == [("Up", 3), ("Submitted", 2), ("Error", 1)]
    assert by_state([]) == []


def test_only_a_browser_on_a_console_path_gets_an_error_page() -> None:
    browser = "text/html,application/xhtml+xml,*/*;q=0.8"
    assert wants_page("/no-such-page", browser) and wants_page("/instances/x/y", browser)
    assert not wants_page("/no-such-page", "application/json") and not wants_page("/no-such-page", "")
    for path in ("/api/v1/x", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs-assets/x.js",
                 "/console-assets/nope.js"):  # fmt: skip
        assert not wants_page(path, browser), path
    assert wants_page("/apis", browser) and wants_page("/docsy", browser)  # prefixes are whole path segments


def test_the_depth_line_places_samples_by_age_and_scales_to_the_peak() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    samples = [(now - timedelta(minutes=90), 50), (now, 5), (now - timedelta(minutes=30), 10),
               (now - timedelta(hours=1), 0)]  # fmt: skip
    line = depth_line(samples, now, 360, 80)
    assert line == DepthLine("0.0,80.0 180.0,0.0 360.0,40.0", (360.0, 40.0), peak=10, latest=5, samples=3)
    assert depth_line([(now - timedelta(hours=2), 3)], now, 360, 80) is None
    flat = depth_line([(now, 0)], now, 360, 80)
    assert flat is not None and flat.points == "360.0,80.0" and flat.peak == 0


def test_only_a_platform_admin_views_the_org_it_chose() -> None:
    assert org_viewed("default", True, "acme") == "acme"
    assert org_viewed("default", True, None) == "default" and org_viewed("default", True, "") == "default"
    assert org_viewed("default", True, "<script>") == "default" and org_viewed("default", True, "Acme") == "default"
    assert org_viewed("acme", False, "other") == "acme"  # any other role's cookie is ignored


def test_number_inputs_take_their_bounds_from_the_apis_model() -> None:
    assert int_bounds(ConnectionPooler, "default_pool_size") == (1, 1000)
    assert int_bounds(ConnectionPooler, "max_client_connections") == (10, 100_000)
