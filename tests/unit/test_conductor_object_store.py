"""``howdah conductor``'s object store options (the Kubernetes data plane's backups): both or none of destination
and Secret, each checked before anything starts, and the environment read as the options; its lease and status
interval, refused below their minimum."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from howdah.cli import app
from howdah.cli.conductor import make_provider

runner = CliRunner()
NOWHERE = "postgresql://howdah@127.0.0.1:1/none"  # never connected to: the options are refused first


def conductor(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["conductor", "--provider", "kubernetes", "--database-url", NOWHERE, *args], env=env)
    return result.exit_code, result.output


def test_a_destination_without_a_secret_is_refused() -> None:
    code, output = conductor("--object-store-destination", "s3://backups/howdah")
    assert code == 1 and "--object-store-secret" in output


def test_the_environment_counts_as_the_options() -> None:
    code, output = conductor(env={"HOWDAH_K8S_OBJECT_STORE_SECRET": "object-store"})
    assert code == 1 and "--object-store-destination" in output


@pytest.mark.parametrize(
    ("store", "why"),
    [
        ({"destination": "/var/backups", "secret": "object-store"}, "s3://bucket"),
        ({"destination": "s3://b", "secret": "Not/A Name"}, "not a Kubernetes object name"),
        ({"destination": "s3://b", "secret": "s", "endpoint_url": "minio:9000"}, "http(s) URL"),
    ],
)
def test_a_bad_object_store_is_refused_before_the_provider_starts(
    store: dict[str, str | None], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit):
        make_provider("kubernetes", None, "tenants", store)
    assert why in capsys.readouterr().err.replace("\n", "")


@pytest.mark.parametrize(("option", "value"), [("--lease", "0"), ("--status-interval", "0")])
def test_a_lease_or_status_interval_below_its_minimum_is_refused(option: str, value: str) -> None:
    code, output = conductor(option, value)
    assert code == 2 and option in output
