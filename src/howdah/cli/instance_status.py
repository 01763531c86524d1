"""``howdah instance status NAME``: one instance's condition at a glance, in the manner of ``kubectl cnpg
status``: state and why, its servers with replication lag, pending restart, the settings changed from its stack's
defaults, extensions, disk use, the last backup and the recovery window (a command of ``howdah instance``)."""

from __future__ import annotations

from datetime import UTC, datetime

from howdah.cli._api import Api, ApiSettings
from howdah.cli._common import friendly
from howdah.cli._completion import InstanceName
from howdah.cli._output import Format, JsonFlag, OutputOption, chosen, emit
from howdah.cli._status_view import status_record, status_view


@friendly
def status(name: InstanceName, output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """An instance's condition (by name, id or unique id prefix): state and why, primary and replicas with lag,
    pending restart, settings changed from the stack's defaults, extensions, disk use, backups."""
    api = Api(ApiSettings.load())
    item = api.find(name)
    backups = api.call("GET", f"{api.instances}/{item['id']}/backups")
    record = status_record(item, backups)
    emit(record, chosen(output, as_json), lambda: status_view(record, datetime.now(UTC), [b["id"] for b in backups]))
