"""The Kubernetes provider against a Kubernetes API emulator (kmock), since no real API server runs here.

kmock's ``KubernetesEmulator`` stores objects and serves GET / LIST / DELETE with Kubernetes' URLs and error
bodies. Server-side apply it does not know (it answers a PATCH of a missing object with 404 and merges dicts),
so :class:`ApplyEmulator` adds the part the provider relies on: an apply creates the object or replaces
everything but its ``status`` (what apply does for objects one field manager owns entirely), refuses unknown
resource types with 404, checks CloudNativePG objects against the operator's CRD schemas when applied with
``fieldValidation=Strict`` (and the CRDs are at hand), can be given an admission check (a validating webhook), and
LIST honours equality label selectors. The operator is not emulated: tests write the ``status`` CloudNativePG
would write.

The emulator runs its aiohttp server on 127.0.0.1 in a background event loop; the provider (sync, urllib3)
talks to it over HTTP as it would to a real API server.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp.web
import kmock
import pytest
from kubernetes import client

from howdah.control.spec import ConnectionPooler, InstanceSpec
from howdah.providers import (
    Backup,
    Capability,
    Provider,
    ProviderError,
    RecoveryTarget,
    TransientProviderError,
    Unsupported,
    _cnpg,
    _cnpg_admission,
)
from howdah.providers import _cnpg_backup as _bk
from howdah.providers._cnpg_backup import ObjectStoreConfig
from howdah.providers.kubernetes import KubernetesProvider
from tests import cnpg_schema

NS = "tenants"
IID = "0b9f6c1e-3a52-4d8e-9f10-6a7b8c9d0e1f"
OTHER = "5d2e7f10-1b2c-4d3e-8f4a-5b6c7d8e9f00"
CLUSTERS = f"{_cnpg.GROUP}/{_cnpg.VERSION}/clusters"
POOLERS = f"{_cnpg.GROUP}/{_cnpg.VERSION}/poolers"
DATABASES = f"{_cnpg.GROUP}/{_cnpg.VERSION}/databases"
SECRETS = "v1/secrets"
BACKUPS = f"{_cnpg.GROUP}/{_cnpg.VERSION}/backups"
SCHEDULED = f"{_cnpg.GROUP}/{_cnpg.VERSION}/scheduledbackups"
STORES = f"{_bk.STORE_GROUP}/{_bk.STORE_VERSION}/objectstores"
STORE = ObjectStoreConfig(destination="s3://backups/howdah", secret="object-store", endpoint_url="http://minio:9000")
SETTINGS = {"max_connections": "100", "shared_preload_libraries": "pg_stat_statements", "work_mem": "4MB"}
HEALTHY = {
    "phase": "Cluster in healthy state",
    "instances": 1,
    "readyInstances": 1,
    "currentPrimary": "orders-1",
    "instanceNames": ["orders-1"],
    "instancesStatus": {"healthy": ["orders-1"]},
    "pgDataImageInfo": {"image": "ghcr.io/cloudnative-pg/postgresql:18.1", "majorVersion": 18},
}


class ApplyEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus server-side apply, label selectors and an optional admission check."""

    admission: Callable[[dict[str, Any]], str | None] | None = None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        content_type = request.headers.get("Content-Type", "")
        if request.action == kmock.action.UPDATE and content_type.startswith("application/apply-patch"):
            return await self._apply(request)
        return await super()._handle(request)

    async def _apply(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        assert request.resource is not None and request.name is not None
        if request.resource not in set(self.resources):
            raise kmock.KubernetesResourceNotFoundError(message="the server could not find the requested resource")
        body = request.data
        if not isinstance(body, dict) or body.get("metadata", {}).get("name") != request.name:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="the name in the body differs")
        if request.params.get("fieldManager") is None:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="fieldManager is required")
        strict = request.params.get("fieldValidation") == "Strict" and body.get("kind") in cnpg_schema.PLURALS
        if strict and cnpg_schema.available():  # what CloudNativePG's CRD schemas refuse, a strict apply refuses
            found = cnpg_schema.problems(body, cnpg_schema.VERSIONS[-1])
            if found:
                raise kmock.KubernetesError(status=422, reason="Invalid", message="; ".join(found))
        key = (request.resource, request.namespace, request.name)
        live = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else None
        refused = _cnpg_admission.refusals(body, live)  # the operator's webhook, as far as Howdah mirrors it
        if refused:
            denied = f'admission webhook "v{body["kind"].lower()}.cnpg.io" denied the request: '
            raise kmock.KubernetesError(status=422, reason="Invalid", message=denied + "; ".join(map(str, refused)))
        message = self.admission(body) if self.admission else None
        if message is not None:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=message)
        async with self._lock:
            if key in self.objects and not self.objects[key].deleted:
                current = self.objects[key]
                status = current.raw.get("status")
                current.create({**body, "status": status} if status is not None else body)
            else:
                self.objects[key] = body
            stored = self.objects[key].raw
        return aiohttp.web.json_response(stored)

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        listed = await super()._serve_list(request)
        selector = request.params.get("labelSelector", "")
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        assert isinstance(listed, dict)
        listed["items"] = [
            item
            for item in listed["items"]
            if all(item.get("metadata", {}).get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return listed


class Api:
    """The emulator running in a background event loop, and helpers to look at or change its objects."""

    def __init__(self, resources: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kmock", daemon=True)
        self.thread.start()
        self.emulator = ApplyEmulator()
        for resource in resources:
            self.emulator.resources[resource] = kmock.ResourceInfo(namespaced=True)
        self.server = kmock.Server(self.emulator)
        self.run(self._start())
        self.url = str(self.server.url).rstrip("/")

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _start(self) -> None:
        await self.emulator.__aenter__()
        await self.server.__aenter__()

    async def _stop(self) -> None:
        await self.server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    def close(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def provider(self, **options: Any) -> KubernetesProvider:
        configuration = client.Configuration(host=self.url)
        return KubernetesProvider(NS, client.ApiClient(configuration), **options)

    def live(self, resource: str) -> dict[str, dict[str, Any]]:
        """The stored (not deleted) objects of one resource, by name."""

        async def read() -> dict[str, dict[str, Any]]:
            async with self.emulator._lock:
                return {
                    name: obj.raw
                    for (res, _, name), obj in self.emulator.objects.items()
                    if res == kmock.resource(resource) and not obj.deleted
                }

        result: dict[str, dict[str, Any]] = self.run(read())
        return result

    def one(self, resource: str) -> dict[str, Any]:
        objects = self.live(resource)
        assert len(objects) == 1, sorted(objects)
        return next(iter(objects.values()))

    def set_status(self, name: str, status: dict[str, Any], resource: str = CLUSTERS) -> None:
        """Write an object's status (a Cluster's by default) as the operator or the plugin would."""

        async def write() -> None:
            async with self.emulator._lock:
                self.emulator.objects[resource, NS, name]["status"] = status

        self.run(write())

    def put(self, resource: str, obj: dict[str, Any]) -> None:
        async def write() -> None:
            async with self.emulator._lock:
                self.emulator.objects[resource, NS, obj["metadata"]["name"]] = obj

        self.run(write())

    def requests(self, method: str) -> list[kmock.Request]:
        return [r for r in self.emulator if r.method == kmock.method(method)]


@pytest.fixture
def api() -> Iterator[Api]:
    emulated = Api([CLUSTERS, POOLERS, DATABASES, SECRETS, BACKUPS, SCHEDULED, STORES])
    yield emulated
    emulated.close()


@pytest.fixture
def provider(api: Api) -> KubernetesProvider:
    return api.provider(wait_timeout=2.0, poll_interval=0.05)


def create(provider: KubernetesProvider, spec: InstanceSpec | None = None, **options: Any) -> str:
    spec = spec or InstanceSpec(name="orders")
    provider.ensure_created(IID, spec.name, dict(SETTINGS), spec=spec, org="acme", **options)
    return _cnpg.cluster_name(IID, spec.name)


def test_it_is_a_provider(provider: KubernetesProvider) -> None:
    typed: Provider = provider  # mypy checks the protocol here
    assert typed.name == "kubernetes"


# --- apply ------------------------------------------------------------------------------------------------------


def test_create_applies_secret_then_cluster_with_server_side_apply(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)
    cluster = api.one(CLUSTERS)
    assert cluster["metadata"]["name"] == name
    assert cluster["metadata"]["labels"][_cnpg.LABEL_INSTANCE] == IID
    assert cluster["metadata"]["labels"]["howdah.dev/org"] == "acme"
    assert cluster["metadata"]["annotations"] == {
        "cnpg.io/hibernation": "off", "howdah.dev/parameters": "max_connections,work_mem",
    }  # fmt: skip
    assert cluster["spec"]["instances"] == 1
    # pg_stat_statements is preloaded: one of its settings keeps the operator from dropping its extension
    assert cluster["spec"]["postgresql"]["parameters"] == {
        "max_connections": "100", "pg_stat_statements.track": "top", "work_mem": "4MB",
    }  # fmt: skip
    assert cluster["spec"]["postgresql"]["shared_preload_libraries"] == ["pg_stat_statements"]
    assert api.live(POOLERS) == {}
    secret = api.one(SECRETS)
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert base64.b64decode(secret["data"]["username"]) == b"app"
    assert len(base64.b64decode(secret["data"]["password"])) >= 24

    patches = api.requests("PATCH")
    assert [r.url.path.rsplit("/", 2)[-2] for r in patches] == ["secrets", "clusters"]
    for request in patches:
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        assert request.params["fieldManager"] == "howdah"
        assert request.params["force"] == "true"
        assert request.params["fieldValidation"] == "Strict"
    assert not api.requests("POST") and not api.requests("PUT")


def test_applying_again_updates_the_one_object_and_keeps_the_password(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)
    password = api.one(SECRETS)["data"]["password"]
    create(provider)  # a conductor re-running the step after a crash
    assert list(api.live(CLUSTERS)) == [name]

    bigger = InstanceSpec(name="orders", cpu="2", memory="4Gi", storage="20Gi", replicas=3)
    assert provider.apply_settings(IID, {"max_connections": "200"}, spec=bigger) is False
    cluster = api.one(CLUSTERS)
    assert list(api.live(CLUSTERS)) == [name]
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert cluster["spec"]["storage"] == {"size": "20Gi"}
    # The whole object is applied: settings left out are removed, not merged.
    assert cluster["spec"]["postgresql"]["parameters"] == {"max_connections": "200"}
    assert cluster["spec"]["postgresql"]["shared_preload_libraries"] == []
    assert cluster["metadata"]["labels"]["howdah.dev/org"] == "acme"
    assert api.one(SECRETS)["data"]["password"] == password

    # Without a spec, the live shape is kept.
    provider.apply_settings(IID, SETTINGS)
    cluster = api.one(CLUSTERS)
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["storage"] == {"size": "20Gi"}


def test_pooler_follows_the_spec(api: Api, provider: KubernetesProvider) -> None:
    pooled = InstanceSpec(
        name="orders", replicas=3, connection_pooler=ConnectionPooler(enabled=True, pool_mode="session")
    )
    name = create(provider, pooled)
    pooler = api.one(POOLERS)
    assert pooler["metadata"]["name"] == f"{name}-pooler"
    assert pooler["spec"]["cluster"] == {"name": name}
    assert pooler["spec"]["pgbouncer"]["poolMode"] == "session"
    assert pooler["spec"]["instances"] == 2

    # Lifecycle changes re-render the pooler from what is live.
    provider.stop(IID)
    assert api.one(POOLERS)["spec"]["pgbouncer"]["poolMode"] == "session"

    provider.apply_settings(IID, SETTINGS, spec=InstanceSpec(name="orders"))
    assert api.live(POOLERS) == {}


def test_ensure_app_database_returns_the_rw_service_and_the_secret_password(
    api: Api, provider: KubernetesProvider
) -> None:
    name = create(provider)
    info = provider.ensure_app_database(IID)
    assert (info.host, info.port, info.user, info.dbname) == (f"{name}-rw.{NS}.svc", 5432, "app", "app")
    assert info.password == base64.b64decode(api.one(SECRETS)["data"]["password"]).decode()


def test_extensions_are_declared_on_a_database_object(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)
    provider.ensure_extensions(IID, ["pg_stat_statements", "vector"], ["hstore"])
    database = api.one(DATABASES)
    assert database["spec"]["cluster"] == {"name": name}
    assert database["spec"]["name"] == "app"
    assert database["spec"]["extensions"] == [
        {"name": "pg_stat_statements", "ensure": "present", "schema": "extensions"},
        {"name": "vector", "ensure": "present", "schema": "extensions"},
        {"name": "hstore", "ensure": "absent"},
    ]
    assert database["spec"]["schemas"] == [{"name": "extensions", "owner": "postgres", "ensure": "present"}]


# --- status -----------------------------------------------------------------------------------------------------


def test_status_is_read_from_the_cluster_status(api: Api, provider: KubernetesProvider) -> None:
    assert provider.status(IID).exists is False
    name = create(provider)
    fresh = provider.status(IID)
    assert (fresh.exists, fresh.running, fresh.accepting_connections) == (True, False, False)

    api.set_status(name, {"phase": "Setting up primary", "instances": 1, "readyInstances": 0})
    assert provider.status(IID).running is False

    pods = ["orders-1", "orders-2"]
    api.set_status(
        name,
        {**HEALTHY, "instances": 2, "readyInstances": 2, "instanceNames": pods, "instancesStatus": {"healthy": pods}},
    )
    status = provider.status(IID)
    assert (status.exists, status.running, status.accepting_connections) == (True, True, True)
    assert status.server_version == "18"
    assert status.port == 5432
    assert [(r["name"], r["role"]) for r in status.replicas] == [("orders-1", "primary"), ("orders-2", "replica")]

    # An apply (a settings change) keeps the operator's status.
    provider.apply_settings(IID, SETTINGS)
    assert provider.status(IID).accepting_connections is True


def test_status_finds_the_cluster_without_a_cache(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)
    api.set_status(name, HEALTHY)
    fresh = api.provider()  # e.g. after a conductor restart: found by label
    assert fresh.status(IID).accepting_connections is True
    assert "labelSelector" in api.requests("GET")[-1].params


def test_ensure_running_waits_for_the_primary(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)

    def operator() -> None:
        time.sleep(0.3)
        api.set_status(name, HEALTHY)

    threading.Thread(target=operator).start()
    status = provider.ensure_running(IID)
    assert status.accepting_connections is True


def test_ensure_running_gives_up_with_a_transient_error(api: Api) -> None:
    provider = api.provider(wait_timeout=0.3, poll_interval=0.05)
    name = create(provider)
    api.set_status(name, {"phase": "Setting up primary", "readyInstances": 0})
    with pytest.raises(TransientProviderError, match=r"after start \(operator phase: Setting up primary\)"):
        provider.ensure_running(IID)


# --- lifecycle --------------------------------------------------------------------------------------------------


def test_stop_and_start_set_the_hibernation_annotation(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)
    api.set_status(name, HEALTHY)

    provider.stop(IID)
    cluster = api.one(CLUSTERS)
    assert cluster["metadata"]["annotations"]["cnpg.io/hibernation"] == "on"
    assert cluster["spec"]["postgresql"]["parameters"] == {
        "max_connections": "100", "pg_stat_statements.track": "top", "work_mem": "4MB",
    }  # fmt: skip
    assert provider.status(IID).running is False  # the operator's status still says healthy; the annotation wins

    applies = len(api.requests("PATCH"))
    provider.stop(IID)  # already stopped: nothing to apply
    assert len(api.requests("PATCH")) == applies

    status = provider.ensure_running(IID)
    assert api.one(CLUSTERS)["metadata"]["annotations"]["cnpg.io/hibernation"] == "off"
    assert status.accepting_connections is True


def test_restart_changes_the_restarted_at_annotation(api: Api, provider: KubernetesProvider) -> None:
    name = create(provider)
    api.set_status(name, HEALTHY)
    provider.restart(IID)
    first = api.one(CLUSTERS)["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert first.endswith("Z")
    provider.restart(IID)
    second = api.one(CLUSTERS)["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert second > first

    # Later applies keep the annotation (removing it would make the operator restart again).
    provider.apply_settings(IID, SETTINGS)
    provider.stop(IID)
    annotations = api.one(CLUSTERS)["metadata"]["annotations"]
    assert annotations == {
        "cnpg.io/hibernation": "on", "kubectl.kubernetes.io/restartedAt": second,
        "howdah.dev/parameters": "max_connections,work_mem",
    }  # fmt: skip


def test_delete_removes_every_object_and_is_idempotent(api: Api, provider: KubernetesProvider) -> None:
    create(provider, InstanceSpec(name="orders", connection_pooler=ConnectionPooler(enabled=True)))
    provider.ensure_extensions(IID, ["vector"], [])
    provider.ensure_created(OTHER, "orders", SETTINGS)  # same name, another instance: kept
    assert len(api.live(CLUSTERS)) == 2
    assert provider.list_instances() == sorted([IID, OTHER])

    provider.delete(IID)
    assert [c["metadata"]["labels"][_cnpg.LABEL_INSTANCE] for c in api.live(CLUSTERS).values()] == [OTHER]
    assert api.live(POOLERS) == {} and api.live(DATABASES) == {}
    assert [s["metadata"]["labels"][_cnpg.LABEL_INSTANCE] for s in api.live(SECRETS).values()] == [OTHER]
    assert provider.status(IID).exists is False
    assert provider.list_instances() == [OTHER]
    provider.delete(IID)  # again: nothing left, no error


def test_list_instances_only_lists_howdah_clusters(api: Api, provider: KubernetesProvider) -> None:
    api.put(CLUSTERS, {"apiVersion": _cnpg.API_VERSION, "kind": "Cluster", "metadata": {"name": "hand-made"}})
    assert provider.list_instances() == []
    create(provider)
    assert provider.list_instances() == [IID]


def test_operations_on_a_missing_instance(provider: KubernetesProvider) -> None:
    for operation in (provider.ensure_running, provider.stop, provider.restart, provider.ensure_app_database):
        with pytest.raises(ProviderError, match="does not exist") as caught:
            operation(IID)
        assert not isinstance(caught.value, TransientProviderError)


def test_what_it_cannot_do_is_declared_and_refused_by_name(provider: KubernetesProvider) -> None:
    assert Capability.BACKUP not in provider.capabilities and Capability.RESTORE not in provider.capabilities
    assert Capability.REPLICAS not in provider.capabilities  # replicas come from spec.replicas, in the Cluster
    backup = Backup("b1", IID, "s3://nowhere", 0, datetime.now(UTC))
    no_store = "no object store is configured"
    assert Capability.PITR not in provider.capabilities
    for call, what in ((lambda: provider.backup(IID, "b1"), no_store),
                       (lambda: provider.restore(backup, "copy", "copy"), no_store),
                       (lambda: provider.restore_to(IID, "copy", "copy", RecoveryTarget()), no_store),
                       (lambda: provider.ensure_replicas(IID, 2), "from the spec")):  # fmt: skip
        with pytest.raises(Unsupported, match=what) as caught:
            call()
        assert not isinstance(caught.value, TransientProviderError)  # permanent: the conductor does not retry


# --- errors -----------------------------------------------------------------------------------------------------


def test_a_rejected_object_is_a_permanent_error_with_the_api_message(api: Api, provider: KubernetesProvider) -> None:
    """An admission webhook refusing what Howdah does not know to refuse (a rule of a newer operator, here one
    on work_mem) is a permanent error carrying the API server's message, and nothing is left behind."""
    message = (
        'admission webhook "vcluster.cnpg.io" denied the request: spec.postgresql.parameters.work_mem: '
        'Invalid value: "64GB": too large for this cluster'
    )

    def webhook(body: dict[str, Any]) -> str | None:
        parameters = body.get("spec", {}).get("postgresql", {}).get("parameters", {})
        return message if parameters.get("work_mem") == "64GB" else None

    api.emulator.admission = webhook
    with pytest.raises(ProviderError) as caught:
        provider.ensure_created(IID, "orders", {**SETTINGS, "work_mem": "64GB"})
    assert not isinstance(caught.value, TransientProviderError)
    assert message in str(caught.value)
    assert "422" in str(caught.value)
    assert api.live(CLUSTERS) == {}


def test_what_the_operator_would_refuse_is_refused_before_it_is_applied(api: Api, provider: KubernetesProvider) -> None:
    """Settings that reach the provider without the API's checks (an older stored spec, a direct caller) and that
    the operator's webhook would refuse: a permanent error naming the parameter and the operator's rule, and no
    Cluster applied."""
    with pytest.raises(ProviderError) as caught:
        provider.ensure_created(IID, "orders", {**SETTINGS, "log_rotation_age": "1d", "wal_level": "minimal"})
    assert not isinstance(caught.value, TransientProviderError)
    text = str(caught.value)
    assert "spec.postgresql.parameters.log_rotation_age" in text and "validateConfiguration" in text
    assert "spec.postgresql.parameters.wal_level" in text
    assert api.live(CLUSTERS) == {}


def test_the_emulated_webhook_refuses_a_shrinking_volume(api: Api, provider: KubernetesProvider) -> None:
    """The emulator applies the operator's change rules against the live object: a Cluster applied with less
    storage than it has is refused (validateStorageChange) and the live object keeps its size. (The API refuses
    such a spec long before; this holds the emulator, and so the provider's tests, to the operator's rules.)"""
    name = create(provider, InstanceSpec(name="orders", storage="20Gi"))
    with pytest.raises(ProviderError, match="validateStorageChange"):
        provider.apply_settings(IID, SETTINGS, spec=InstanceSpec(name="orders", storage="1Gi"))
    assert api.live(CLUSTERS)[name]["spec"]["storage"] == {"size": "20Gi"}


def test_forbidden_is_a_permanent_error(api: Api, provider: KubernetesProvider) -> None:
    message = 'secrets "x" is forbidden: User "howdah" cannot get resource "secrets" in the namespace "tenants"'
    api.emulator[kmock.method.GET, kmock.resource(SECRETS)] << kmock.KubernetesError(
        status=403, reason="Forbidden", message=message
    )
    with pytest.raises(ProviderError) as caught:
        create(provider)
    assert not isinstance(caught.value, TransientProviderError)
    assert message in str(caught.value)


def test_server_errors_are_transient(api: Api, provider: KubernetesProvider) -> None:
    api.emulator[kmock.method.GET, kmock.resource(CLUSTERS)] << kmock.KubernetesError(
        status=503, reason="ServiceUnavailable", message="etcdserver: leader changed"
    )
    with pytest.raises(TransientProviderError, match="etcdserver: leader changed"):
        provider.status(IID)


def test_a_missing_operator_is_a_permanent_error(api: Api) -> None:
    bare = Api([SECRETS])  # no CloudNativePG resources: the operator's CRDs are not installed
    try:
        with pytest.raises(ProviderError, match="CloudNativePG operator installed") as caught:
            bare.provider().ensure_created(IID, "orders", SETTINGS)
        assert not isinstance(caught.value, TransientProviderError)
    finally:
        bare.close()


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    provider = KubernetesProvider(NS, client.ApiClient(configuration))
    with pytest.raises(TransientProviderError, match="unreachable"):
        provider.status(IID)
    with pytest.raises(TransientProviderError):
        provider.ensure_created(IID, "orders", SETTINGS)


# --- backups and restores (an object store configured) ------------------------------------------------------------

NEW = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
START = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def backed(api: Api) -> KubernetesProvider:
    return api.provider(wait_timeout=0.0, poll_interval=0.01, object_store=STORE)


def test_with_an_object_store_backups_are_offered(backed: KubernetesProvider, provider: KubernetesProvider) -> None:
    assert {Capability.BACKUP, Capability.RESTORE, Capability.PITR, Capability.SCHEDULED_BACKUPS} <= backed.capabilities
    assert Capability.POOLER in backed.capabilities and Capability.PITR not in provider.capabilities


def test_backups_on_apply_the_store_the_archiver_and_the_schedule(api: Api, backed: KubernetesProvider) -> None:
    name = create(backed, InstanceSpec(name="orders", backup={"schedule": "15 1 * * *", "retention_days": 30}))
    store = api.one(STORES)
    assert store["metadata"]["name"] == f"{name}-store"
    assert store["spec"]["configuration"]["destinationPath"] == f"s3://backups/howdah/{name}"
    assert store["spec"]["configuration"]["s3Credentials"]["accessKeyId"] == {
        "name": "object-store", "key": "ACCESS_KEY_ID",
    }  # fmt: skip
    assert store["spec"]["retentionPolicy"] == "30d"
    assert api.one(CLUSTERS)["spec"]["plugins"][0]["parameters"] == {"barmanObjectName": f"{name}-store"}
    scheduled = api.one(SCHEDULED)
    assert scheduled["spec"]["schedule"] == "0 15 1 * * *" and scheduled["spec"]["method"] == "plugin"
    assert scheduled["spec"]["cluster"] == {"name": name}

    # Turned off: no archiver, no schedule; the store (and what it archived) stays.
    backed.apply_settings(IID, dict(SETTINGS), spec=InstanceSpec(name="orders", backup={"enabled": False}))
    assert "plugins" not in api.one(CLUSTERS)["spec"]
    assert api.live(SCHEDULED) == {} and len(api.live(STORES)) == 1


def test_instances_of_the_same_name_never_share_a_store_folder(api: Api, backed: KubernetesProvider) -> None:
    create(backed)
    backed.ensure_created(OTHER, "orders", dict(SETTINGS), spec=InstanceSpec(name="orders"), org="rival")
    paths = sorted(s["spec"]["configuration"]["destinationPath"] for s in api.live(STORES).values())
    assert len(set(paths)) == 2
    assert all(p.startswith("s3://backups/howdah/orders-") for p in paths)


def test_backups_off_apply_nothing_of_them(api: Api, backed: KubernetesProvider) -> None:
    create(backed, InstanceSpec(name="orders", backup={"enabled": False}))
    assert api.live(STORES) == {} and api.live(SCHEDULED) == {}
    assert "plugins" not in api.one(CLUSTERS)["spec"]
    with pytest.raises(ProviderError, match="backups off"):
        backed.backup(IID, "b1")


def test_a_lifecycle_change_keeps_the_archiver(api: Api, backed: KubernetesProvider) -> None:
    name = create(backed)
    api.set_status(name, HEALTHY)
    backed.stop(IID)
    assert api.one(CLUSTERS)["spec"]["plugins"][0]["name"] == _bk.PLUGIN


def completed_backup(api: Api, name: str, cluster: str, end_lsn: str, stopped: datetime) -> None:
    api.set_status(name, {
        "phase": "completed", "backupId": stopped.strftime("%Y%m%dT%H%M%S"), "beginLSN": "0/2000028",
        "endLSN": end_lsn, "startedAt": stopped.isoformat(), "stoppedAt": stopped.isoformat(),
    }, BACKUPS)  # fmt: skip


def test_an_on_demand_backup_is_a_backup_object_waited_for(api: Api, backed: KubernetesProvider) -> None:
    cluster = create(backed)
    backup_id = "4e0d9f6a-0b1c-4d2e-8f3a-5b6c7d8e9f01"
    with pytest.raises(TransientProviderError, match="not done"):  # the operator has not taken it yet
        backed.backup(IID, backup_id)
    obj = api.one(BACKUPS)
    assert obj["metadata"]["name"] == f"{cluster}-{backup_id}"
    assert obj["spec"] == {"cluster": {"name": cluster}, "method": "plugin",
                           "pluginConfiguration": {"name": _bk.PLUGIN,
                                                   "parameters": {"barmanObjectName": f"{cluster}-store"}}}  # fmt: skip
    completed_backup(api, obj["metadata"]["name"], cluster, "0/3000100", START)
    taken = backed.backup(IID, backup_id)  # the conductor's retry: the same object, now done
    assert len(api.live(BACKUPS)) == 1
    assert taken.backup_id == backup_id and taken.instance_id == IID and taken.created_at == START
    assert taken.location == f"s3://backups/howdah/{cluster}/{cluster}/base/20260301T030000"

    api.set_status(obj["metadata"]["name"], {"phase": "failed", "error": "no space"}, BACKUPS)
    with pytest.raises(ProviderError, match="no space") as caught:
        backed.backup(IID, backup_id)
    assert not isinstance(caught.value, TransientProviderError)


def archive_window(api: Api, cluster: str, first: datetime, last: datetime) -> None:
    window = {"firstRecoverabilityPoint": first.isoformat(), "lastSuccessfulBackupTime": last.isoformat()}
    api.set_status(f"{cluster}-store", {"serverRecoveryWindow": {cluster: window}}, STORES)
    for n, (when, lsn) in enumerate(((first, "0/3000100"), (last, "0/9000100"))):
        api.put(BACKUPS, {"apiVersion": _cnpg.API_VERSION, "kind": "Backup",
                          "metadata": {"name": f"{cluster}-b{n}"}, "spec": {"cluster": {"name": cluster}}})  # fmt: skip
        completed_backup(api, f"{cluster}-b{n}", cluster, lsn, when)


def test_status_reports_the_window_of_the_store(api: Api, backed: KubernetesProvider) -> None:
    cluster = create(backed)
    api.set_status(cluster, HEALTHY)
    assert backed.status(IID).archive["recovery_window"] is None  # no backup yet
    archive_window(api, cluster, START, START + timedelta(hours=24))
    archive = backed.status(IID).as_dict()
    assert archive["accepting_connections"] is True
    assert archive["recovery_window"] == {
        "earliest": START.isoformat(), "latest": (START + timedelta(hours=24)).isoformat(),
        "earliest_lsn": "0/3000100", "latest_lsn": "0/9000100",
    }  # fmt: skip
    assert archive["last_backup_at"] == (START + timedelta(hours=24)).isoformat()


def test_restore_to_a_time_makes_a_cluster_recovering_from_the_source_store(
    api: Api, backed: KubernetesProvider
) -> None:
    source = create(backed)
    archive_window(api, source, START, START + timedelta(hours=24))
    target = START + timedelta(hours=5, microseconds=123)
    backed.restore_to(IID, NEW, "orders-copy", RecoveryTarget(time=target))
    backed.restore_to(IID, NEW, "orders-copy", RecoveryTarget(time=target))  # a retried step
    assert len(api.live(CLUSTERS)) == 1  # the Cluster waits for the spec, in ensure_created

    copy_spec = InstanceSpec(name="orders-copy", storage="5Gi")
    backed.ensure_created(NEW, "orders-copy", dict(SETTINGS), spec=copy_spec, org="acme")
    copy = api.live(CLUSTERS)[_cnpg.cluster_name(NEW, "orders-copy")]
    recovery = copy["spec"]["bootstrap"]["recovery"]
    assert "initdb" not in copy["spec"]["bootstrap"]
    assert recovery["recoveryTarget"] == {"targetTime": "2026-03-01T08:00:00.000123Z"}
    assert copy["spec"]["externalClusters"][0]["plugin"]["parameters"] == {
        "barmanObjectName": f"{source}-store", "serverName": source,
    }  # fmt: skip
    assert copy["spec"]["storage"] == {"size": "5Gi"}  # the spec's shape, not a default
    # It archives to a store of its own, never into the source's.
    assert copy["spec"]["plugins"][0]["parameters"]["barmanObjectName"] == f"{copy['metadata']['name']}-store"
    # Re-applied (an update, a hibernation): still a restore, the same target.
    backed.apply_settings(NEW, {"max_connections": "50"}, spec=copy_spec)
    again = api.live(CLUSTERS)[copy["metadata"]["name"]]
    assert again["spec"]["bootstrap"] == copy["spec"]["bootstrap"]

    with pytest.raises(ProviderError, match="outside the recoverable window"):
        backed.restore_to(IID, OTHER, "late", RecoveryTarget(time=START + timedelta(days=3)))
    with pytest.raises(ProviderError, match="time zone"):
        backed.restore_to(IID, OTHER, "naive", RecoveryTarget(time=datetime(2026, 3, 1, 8)))
    with pytest.raises(ProviderError, match="not an LSN"):
        backed.restore_to(IID, OTHER, "bad-lsn", RecoveryTarget(lsn="0/1'\n  targetTime: x"))
    assert len(api.live(CLUSTERS)) == 2 and _cnpg.cluster_name(OTHER, "late") not in api.live(CLUSTERS)


def test_restore_of_a_backup_and_of_a_deleted_instance(api: Api, backed: KubernetesProvider) -> None:
    source = create(backed)
    archive_window(api, source, START, START + timedelta(hours=24))
    backed.delete(IID)
    assert api.live(CLUSTERS) == {} and api.live(SCHEDULED) == {}
    assert len(api.live(BACKUPS)) == 2  # kept with the store: the window stays readable
    store = api.one(STORES)  # kept: the archive stays restorable
    assert _bk.DELETED_AT in store["metadata"]["annotations"]

    backed.restore_to(IID, NEW, "copy", RecoveryTarget(lsn="0/5000000"))
    backed.ensure_created(NEW, "copy", dict(SETTINGS), spec=InstanceSpec(name="copy"))
    target = api.one(CLUSTERS)["spec"]["bootstrap"]["recovery"]["recoveryTarget"]
    assert target == {"targetLSN": "0/5000000"}

    location = f"s3://backups/howdah/{source}/{source}/base/20260301T030000"
    backed.restore(Backup("b1", IID, location, 0, START), OTHER, "from-backup")
    backed.ensure_created(OTHER, "from-backup", dict(SETTINGS), spec=InstanceSpec(name="from-backup"))
    restored = api.live(CLUSTERS)[_cnpg.cluster_name(OTHER, "from-backup")]
    assert restored["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {
        "backupID": "20260301T030000", "targetImmediate": True,
    }  # fmt: skip
    with pytest.raises(ProviderError, match="not a backup in this data plane"):
        backed.restore(Backup("b2", IID, "s3://someone-else/x/x/base/20260301T030000", 0, START), "z", "z")
