"""The ``howdah`` command line (Typer + Rich)."""

from __future__ import annotations

import typer

from howdah import __version__
from howdah.cli import (
    auth,
    conductor,
    dataplane,
    db,
    df,
    durable,
    instance,
    instance_logs,
    instance_status,
    local_platform,
    queue,
    serve,
    token,
    workflow,
)
from howdah.cli._api import ENV_PROFILE, choose_profile
from howdah.cli._config import ProfileError
from howdah.cli._output import Format, OutputOption, emit
from howdah.cli.up import up

app = typer.Typer(help="Howdah: a Postgres-native control plane.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def root(
    profile: str | None = typer.Option(
        None,
        "--profile",
        envvar=ENV_PROFILE,
        help="The profile to use (`howdah login` adds them; default: the active one).",
    ),
) -> None:
    try:
        choose_profile(profile)
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None


app.add_typer(db.app, name="db")
app.add_typer(queue.app, name="queue")
app.add_typer(durable.app, name="durable")
app.add_typer(df.app, name="df")
app.add_typer(workflow.app, name="workflow")
app.command()(workflow.worker)
instance.app.command("status")(instance_status.status)
instance.app.command("logs")(instance_logs.logs)
app.add_typer(instance.app, name="instance")
app.add_typer(token.app, name="token")
app.add_typer(dataplane.app, name="dataplane")
app.command()(instance.apply)
app.command("api")(serve.api)
app.command("conductor")(conductor.run_conductor)
app.command()(up)
app.command()(local_platform.status)
app.command()(local_platform.down)
app.command()(auth.login)
app.command()(auth.logout)
app.command()(auth.whoami)


@app.command()
def version(output: OutputOption = Format.table) -> None:
    """Print Howdah's version."""
    emit({"version": __version__}, output, lambda: __version__)


def main() -> None:
    app()
