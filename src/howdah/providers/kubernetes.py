"""The Kubernetes provider: each instance is a CloudNativePG ``Cluster``, applied with the official client.

Every change is a server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field manager ``howdah``,
``force``, ``fieldValidation=Strict``) of whole objects rendered by :mod:`howdah.providers._cnpg`: a basic-auth
``Secret`` with the app role's password, the ``Cluster``, a ``Pooler`` when the connection pooler is on, and a
``Database`` declaring the app database's extensions, each first checked against the operator's admission
rules (:mod:`howdah.providers._cnpg_admission`). Applying the same object twice changes nothing, so every
operation is idempotent.
State is read back from the ``Cluster``'s ``.status`` (written by the operator) and objects are found again by
their ``howdah.dev/instance-id`` label.

Lifecycle: stop / start set the ``cnpg.io/hibernation`` annotation to ``on`` / ``off`` (pods deleted, volumes
kept); restart sets ``kubectl.kubernetes.io/restartedAt``, which the operator answers with a rolling restart.
Settings that need a restart are restarted by the operator itself (``primaryUpdateStrategy: unsupervised``), so
:meth:`KubernetesProvider.apply_settings` always returns False. Delete removes the objects; the operator then
deletes the pods and their volumes.

Backups and point-in-time restores (:mod:`howdah.providers._cnpg_backup`, through CloudNativePG's Barman Cloud
Plugin) are offered once the data plane's operator gives an object store (``object_store``): an instance with
``backup.enabled`` then gets an ``ObjectStore``, the WAL-archiver plugin entry and a ``ScheduledBackup``; on-demand
backups are ``Backup`` objects, restores new ``Cluster``s bootstrapped from the source's archive. Deleting an
instance keeps its ``ObjectStore`` (marked ``howdah.dev/deleted-at``), and the bucket keeps its data, so that it
can still be restored.

Pointing it at a real cluster
-----------------------------
1. Install the CloudNativePG operator (1.26 or later for extensions through the ``Database`` resource), e.g.
   ``kubectl apply --server-side -f`` the release manifest from https://cloudnative-pg.io, or its Helm chart.
2. Credentials: without an ``api_client``, the provider uses the in-cluster service account when it runs in a
   pod, else the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``, its current context). For another context
   pass ``default_api_client(context="...")``, for another file
   ``kubernetes.config.new_client_from_config(config_file=..., context=...)``, as ``api_client``.
   Give each data plane a namespace of its own (it must exist): the provider lists what it manages there.
3. RBAC in the target namespace (a Role bound to Howdah's user or service account)::

       - apiGroups: [""]
         resources: [secrets]
         verbs: [get, list, create, patch, delete]
       - apiGroups: [postgresql.cnpg.io]
         resources: [clusters, poolers, databases, backups, scheduledbackups]
         verbs: [get, list, create, patch, delete]
       - apiGroups: [barmancloud.cnpg.io]      # with an object store configured
         resources: [objectstores]
         verbs: [get, list, create, patch]

   (Server-side apply is a ``patch``; ``create`` is checked when it creates an object.)
4. Apps inside the Kubernetes cluster connect to ``<cluster>-rw.<namespace>.svc:5432`` (or the pooler's
   Service ``<cluster>-pooler``); exposing Postgres outside it (a LoadBalancer Service, CloudNativePG's
   ``managed.services``) is left to the cluster's operators.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from howdah.control.capacity import Capacity
from howdah.control.extensions import ExtensionCatalog
from howdah.control.recovery import Window, outside, parse_lsn
from howdah.control.spec import BackupPolicy, InstanceSpec
from howdah.providers import _cnpg, _cnpg_admission
from howdah.providers import _cnpg_backup as _bk
from howdah.providers._cnpg import ClusterShape, ClusterState, SpecLike
from howdah.providers._cnpg_backup import ObjectStoreConfig, Recovery
from howdah.providers.base import (
    Backup,
    Capability,
    ConnectionInfo,
    InstanceStatus,
    ProviderError,
    RecoveryTarget,
    TransientProviderError,
    Unsupported,
)

FIELD_MANAGER = "howdah"
APPLY_PATCH = "application/apply-patch+yaml"
# An unknown or duplicated field is an error, never silently dropped: an object the API server would prune is not
# the object Howdah rendered (an operator older than the fields Howdah writes, say).
FIELD_VALIDATION = "Strict"
_T = TypeVar("_T")
_CNPG = (_cnpg.GROUP, _cnpg.VERSION)
_STORES = (_bk.STORE_GROUP, _bk.STORE_VERSION)
NO_OBJECT_STORE = (
    "no object store is configured for this data plane (howdah conductor --object-store-destination and "
    "--object-store-secret, or HOWDAH_K8S_OBJECT_STORE_DESTINATION / HOWDAH_K8S_OBJECT_STORE_SECRET)"
)


def default_api_client(context: str | None = None) -> client.ApiClient:
    """An API client from the in-cluster service account when running in a pod, else from the kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config(context=context, client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise ProviderError(f"no Kubernetes credentials: not in a pod and no usable kubeconfig ({exc})") from exc
    return client.ApiClient(configuration)


def _translate(exc: Exception, what: str) -> ProviderError:
    """The one place API and network failures become provider errors (5xx, 429, 409, network: transient)."""
    if not isinstance(exc, ApiException):
        return TransientProviderError(f"Kubernetes API unreachable while {what}: {exc}")
    status = int(exc.status or 0)
    message = _api_message(exc)
    if status == 0 or status >= 500 or status in (409, 429):
        return TransientProviderError(f"Kubernetes API error {status} while {what}: {message}")
    if status == 404:
        message += " (is the CloudNativePG operator installed, and does the namespace exist?)"
    return ProviderError(f"Kubernetes API refused {what} ({status}): {message}")


def _api_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return body.strip()[:2000]
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])
    return str(exc.reason or "no message")


def _now() -> str:
    """An RFC 3339 UTC time with microseconds (fixed width, so later times also sort later as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesProvider:
    """Instances as CloudNativePG clusters in one namespace (see the module docstring for setup).

    ``wait_timeout`` bounds how long :meth:`ensure_running` and :meth:`restart` wait for the primary to accept
    connections before raising :class:`TransientProviderError` (the conductor retries); ``poll_interval`` is the
    time between two reads of the ``Cluster``'s status. ``image`` overrides the Postgres image of new clusters;
    ``extensions`` declares what that image offers (default: CloudNativePG's standard image's extensions).
    """

    name = "kubernetes"
    #: Replicas follow ``spec.replicas``; backups and restores need an object store (see ``object_store``).
    capabilities: frozenset[Capability] = frozenset({Capability.POOLER, Capability.IP_ALLOW_LIST})
    #: with an object store; the operator takes the scheduled base backups (a ScheduledBackup per instance)
    BACKUP_CAPABILITIES = frozenset(
        {Capability.BACKUP, Capability.RESTORE, Capability.PITR, Capability.SCHEDULED_BACKUPS}
    )

    def __init__(
        self,
        namespace: str,
        api_client: client.ApiClient | None = None,
        *,
        image: str | None = None,
        extensions: ExtensionCatalog | None = None,
        wait_timeout: float = 600.0,
        poll_interval: float = 2.0,
        object_store: ObjectStoreConfig | None = None,
    ) -> None:
        self.namespace = namespace
        self.object_store = object_store
        if object_store is not None:
            self.capabilities = type(self).capabilities | self.BACKUP_CAPABILITIES
        self.api_client = api_client if api_client is not None else default_api_client()
        self.image = image
        self.extensions = extensions if extensions is not None else _cnpg.standard_image_catalog(image)
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self._core = client.CoreV1Api(self.api_client)
        self._custom = client.CustomObjectsApi(self.api_client)
        self._names: dict[str, str] = {}  # instance id -> Cluster name, found by label once

    # --- the Provider protocol ----------------------------------------------------------------------------------

    def ensure_created(
        self,
        instance_id: str,
        name: str,
        settings: dict[str, str],
        *,
        spec: InstanceSpec | None = None,
        org: str | None = None,
    ) -> None:
        """Apply the Secret, Cluster and Pooler. Without ``spec``, an existing cluster keeps its shape (a new
        one gets 1 cpu, 1Gi, 10Gi, one instance); its hibernation and restart annotations are kept."""
        current = self._state(instance_id)
        if current is None:
            cluster = _cnpg.cluster_name(instance_id, name)
            state = ClusterState(
                instance_id=instance_id, name=name, shape=_shape(spec) if spec else ClusterShape(),
                settings=dict(settings), image=self.image, org=org, hibernated=False, restarted_at=None,
                plugins=self._plugins(cluster, spec.backup if spec else None), recovery=self._pending(cluster),
            )  # fmt: skip
        else:
            state = _replace(current, settings=dict(settings), spec=spec, org=org)
            if spec is not None:
                state = replace(state, plugins=self._plugins(_cnpg.cluster_name(instance_id, state.name), spec.backup))
        self._apply_backups(state, spec.backup if spec else None)
        self._apply(state)

    def ensure_running(self, instance_id: str) -> InstanceStatus:
        """Wake a hibernated cluster, then wait until its primary accepts connections."""
        state = self._require(instance_id)
        if state.hibernated:
            self._apply(_replace(state, hibernated=False))
        return self._wait_accepting(instance_id, "start")

    def ensure_app_database(self, instance_id: str) -> ConnectionInfo:
        """The app database and role are made by the operator's ``initdb`` from the Secret; read it back."""
        state = self._require(instance_id)
        cluster = _cnpg.cluster_name(instance_id, state.name)
        secret = self._get_secret(_cnpg.secret_name(cluster))
        password = _cnpg.secret_password(secret) if secret else None
        if password is None:
            raise ProviderError(f"instance {instance_id}: the credentials Secret {_cnpg.secret_name(cluster)} is gone")
        return ConnectionInfo(
            host=_cnpg.rw_host(cluster, self.namespace), port=_cnpg.POSTGRES_PORT, user=_cnpg.APP_USER,
            password=password, dbname=_cnpg.APP_DATABASE,
        )  # fmt: skip

    def apply_settings(self, instance_id: str, settings: dict[str, str], *, spec: InstanceSpec | None = None) -> bool:
        """Re-apply the Cluster with ``settings`` (and ``spec``'s shape when given). Always False: the operator
        restarts the pods itself, replicas first, when a changed setting needs it."""
        state = _replace(self._require(instance_id), settings=dict(settings), spec=spec)
        if spec is not None:
            state = replace(state, plugins=self._plugins(_cnpg.cluster_name(instance_id, state.name), spec.backup))
        self._apply_backups(state, spec.backup if spec else None)
        self._apply(state)
        return False

    def ensure_extensions(self, instance_id: str, enabled: list[str], disabled: list[str]) -> None:
        """Declare them on the app database's ``Database`` object; the operator runs CREATE / DROP EXTENSION."""
        state = self._require(instance_id)
        body = _cnpg.render_database(
            instance_id, state.name, enabled, disabled, namespace=self.namespace, catalog=self.extensions, org=state.org
        )
        self._apply_custom(_cnpg.DATABASES, body)

    def restart(self, instance_id: str) -> InstanceStatus:
        """Set ``restartedAt`` to now, then wait until the primary accepts connections.

        The operator answers with a rolling restart (replicas first, then a switchover or an in-place restart of
        the primary) that runs on after this returns; the status has no postmaster start time to confirm it."""
        state = self._require(instance_id)
        restarted_at = _now()
        while restarted_at == state.restarted_at:  # the operator restarts only when the value changes
            time.sleep(0.001)
            restarted_at = _now()
        self._apply(_replace(state, restarted_at=restarted_at))
        return self._wait_accepting(instance_id, "restart")

    def stop(self, instance_id: str) -> None:
        """Hibernate: the operator deletes the pods and keeps the volumes."""
        state = self._require(instance_id)
        if not state.hibernated:
            self._apply(_replace(state, hibernated=True))

    def delete(self, instance_id: str) -> None:
        """Delete every object labelled with the instance id; the operator removes the pods and volumes. Its
        ``ObjectStore`` and ``Backup`` objects are kept, the store marked with the time of deletion: the archive
        stays restorable, its window readable (the bucket's data is never removed from here; once the Cluster is
        gone no retention runs on it)."""
        selector = _cnpg.instance_selector(instance_id)
        if self.object_store is not None:
            for store in self._list_custom(_bk.OBJECT_STORES, selector, api=_STORES):
                self._mark_deleted(store)
        plurals = (_bk.SCHEDULED_BACKUPS, _cnpg.POOLERS, _cnpg.DATABASES, _cnpg.CLUSTERS)
        for plural in plurals if self.object_store is not None else plurals[1:]:
            for obj in self._list_custom(plural, selector):
                self._delete_custom(plural, obj["metadata"]["name"])
        for secret in self._list_secrets(selector):
            self._delete_secret(secret["metadata"]["name"])
        self._names.pop(instance_id, None)

    def status(self, instance_id: str) -> InstanceStatus:
        """The Cluster's status, and with an object store its archive's (see :func:`_cnpg_backup.archive_status`)."""
        cluster = self._find_cluster(instance_id)
        status = _cnpg.instance_status(cluster)
        if cluster is None or self.object_store is None:
            return status
        return replace(status, archive=self._archive_status(cluster["metadata"]["name"], cluster))

    def capacity(self) -> Capacity | None:
        """Unknown: a cluster's allocatable resources change with its nodes and are not read here."""
        return None

    def extension_catalog(self) -> ExtensionCatalog:
        """The extensions of the image the clusters run, as declared (the image's files are not read from here)."""
        return self.extensions

    def log_lines(self, instance_id: str, offsets: Mapping[str, int], max_bytes: int) -> list[tuple[str, str, int]]:
        """None shipped: the pods' logs are Kubernetes's (``kubectl logs``)."""
        return []

    def list_instances(self) -> list[str]:
        """Every Howdah-managed Cluster's instance id: give each data plane a namespace of its own."""
        clusters = self._list_custom(_cnpg.CLUSTERS, _cnpg.MANAGED_SELECTOR)
        ids = {c["metadata"]["labels"].get(_cnpg.LABEL_INSTANCE) for c in clusters}
        return sorted(str(i) for i in ids if i)

    def backup(self, instance_id: str, backup_id: str | None = None) -> Backup:
        """A base backup of the instance to its object store: a ``Backup`` object (the same one again for the same
        ``backup_id``), waited for until the operator reports it completed (``wait_timeout``: then transient)."""
        store = self._store()
        state = self._require(instance_id)
        cluster = _cnpg.cluster_name(instance_id, state.name)
        if not state.plugins:
            raise ProviderError(f"instance {instance_id} has backups off (its spec's backup.enabled is false)")
        backup_id = backup_id or datetime.now(UTC).strftime("%Y%m%dt%H%M%Sz-") + secrets.token_hex(3)
        labels = _cnpg.labels(instance_id, state.name, state.org)
        try:
            body = _bk.render_backup(cluster, backup_id, namespace=self.namespace, labels=labels)
        except ValueError as exc:
            raise ProviderError(str(exc)) from None
        name = body["metadata"]["name"]
        if self._get_custom(_bk.BACKUPS, name) is None:
            self._apply_custom(_bk.BACKUPS, body)
        deadline = time.monotonic() + self.wait_timeout
        while True:
            found = self._get_custom(_bk.BACKUPS, name)
            taken = _bk.backup_state(found) if found is not None else None
            if taken is not None and taken.phase == "completed" and taken.backup_id is not None:
                return Backup(
                    backup_id=backup_id, instance_id=instance_id,
                    location=_bk.backup_location(store, cluster, taken.backup_id), size_bytes=0,
                    created_at=taken.stopped_at or datetime.now(UTC),
                )  # fmt: skip
            if taken is not None and taken.phase == "failed":
                raise ProviderError(f"backup {name} failed: {taken.error or 'no error reported'}")
            if time.monotonic() >= deadline:
                phase = taken.phase if taken is not None and taken.phase else "not started"
                raise TransientProviderError(f"backup {name} is not done {self.wait_timeout:g}s on ({phase})")
            time.sleep(self.poll_interval)

    def restore(self, backup: Backup, new_instance_id: str, name: str | None = None) -> None:
        """Prepare ``new_instance_id`` as of the end of ``backup``: :meth:`ensure_created` then makes its Cluster
        bootstrapped from the backup's archive (its recovery stops once that backup is consistent)."""
        store = self._store()
        try:
            server, barman_id = _bk.parse_location(store, backup.location)
            recovery = Recovery(server, _bk.store_name(server), backup_id=barman_id)
        except ValueError as exc:
            raise ProviderError(str(exc)) from None
        self._prepare_restore(new_instance_id, name, recovery)

    def restore_to(self, source_instance_id: str, new_instance_id: str, name: str, target: RecoveryTarget) -> None:
        """Prepare ``new_instance_id`` as ``source_instance_id`` (running, stopped or deleted: its ``ObjectStore``
        outlives it) was at ``target``; :meth:`ensure_created` makes the Cluster. A target outside the window the
        archive reports is refused with the window."""
        self._store()
        stores = self._list_custom(_bk.OBJECT_STORES, _cnpg.instance_selector(source_instance_id), api=_STORES)
        if len(stores) != 1:
            raise ProviderError(f"instance {source_instance_id} has no archive in namespace {self.namespace}")
        store = stores[0]["metadata"]["name"]
        server = store.removesuffix("-store")
        try:  # a time without its zone, an LSN that is none: refused here, before any comparison
            recovery = Recovery(server, store, target.time, target.lsn)
        except ValueError as exc:
            raise ProviderError(f"restoring instance {source_instance_id}: {exc}") from None
        window = self._archive_status(server, self._find_cluster(source_instance_id), stores[0])["recovery_window"]
        lsn = parse_lsn(recovery.target_lsn) if recovery.target_lsn is not None else None
        why = outside(Window.from_dict(window) if window else None, target.time, lsn)
        if why is not None:
            raise ProviderError(f"instance {source_instance_id} cannot be restored: {why}")
        self._prepare_restore(new_instance_id, name, recovery)

    def delete_backup(self, instance_id: str, backup_id: str) -> None:
        raise Unsupported(
            f"the {self.name} provider leaves its object store's backups to the Barman Cloud plugin's retention policy"
        )

    def ensure_replicas(self, instance_id: str, replicas: int) -> list[dict[str, Any]]:
        raise Unsupported(f"the {self.name} provider makes replicas from the spec (its Cluster's instances)")

    # --- backups ------------------------------------------------------------------------------------------------

    def _store(self) -> ObjectStoreConfig:
        if self.object_store is None:
            raise Unsupported(f"the {self.name} provider takes no backups here: {NO_OBJECT_STORE}")
        return self.object_store

    def _plugins(self, cluster: str, policy: BackupPolicy | None) -> tuple[dict[str, Any], ...]:
        """The Cluster's plugins: the WAL archiver when backups are on and an object store is configured."""
        if self.object_store is None or policy is None or not policy.enabled:
            return ()
        return (_bk.archiver_plugin(cluster),)

    def _apply_backups(self, state: ClusterState, policy: BackupPolicy | None) -> None:
        """The ObjectStore and ScheduledBackup of ``policy`` (backups on), or no ScheduledBackup (off; the store
        and its archive stay). Without ``policy`` (no spec given) they are left as they are."""
        if self.object_store is None or policy is None:
            return
        cluster = _cnpg.cluster_name(state.instance_id, state.name)
        labels = _cnpg.labels(state.instance_id, state.name, state.org)
        if not policy.enabled:
            self._delete_custom(_bk.SCHEDULED_BACKUPS, _bk.scheduled_backup_name(cluster))
            return
        try:
            scheduled = _bk.render_scheduled_backup(cluster, policy.schedule, namespace=self.namespace, labels=labels)
        except ValueError as exc:
            raise ProviderError(f"backup.schedule: {exc}") from None
        store = _bk.render_object_store(
            cluster, self.object_store, policy.retention_days, namespace=self.namespace, labels=labels
        )
        self._apply_custom(_bk.OBJECT_STORES, store, api=_STORES)
        self._apply_custom(_bk.SCHEDULED_BACKUPS, scheduled)

    def _archive_status(
        self, server: str, cluster: dict[str, Any] | None, store: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if store is None:
            store = self._get_custom(_bk.OBJECT_STORES, _bk.store_name(server), api=_STORES)
        backups = [_bk.backup_state(b) for b in self._list_custom(_bk.BACKUPS, "")]
        return _bk.archive_status(server, store, backups, cluster, datetime.now(UTC))

    def _mark_deleted(self, store: dict[str, Any]) -> None:
        meta = store["metadata"]
        annotations = {**(meta.get("annotations") or {}), _bk.DELETED_AT: _now()}
        body = {
            "apiVersion": store.get("apiVersion", f"{_bk.STORE_GROUP}/{_bk.STORE_VERSION}"), "kind": "ObjectStore",
            "metadata": {"name": meta["name"], "namespace": self.namespace, "labels": meta.get("labels") or {},
                         "annotations": annotations},
            "spec": store.get("spec") or {},
        }  # fmt: skip
        self._apply_custom(_bk.OBJECT_STORES, body, api=_STORES)

    def _pending(self, cluster: str) -> Recovery | None:
        """The restore a new Cluster is to be bootstrapped from, as :meth:`_prepare_restore` left it."""
        secret = self._get_secret(_cnpg.secret_name(cluster))
        annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
        recovery = annotations.get(_bk.RECOVERY)
        if not recovery:
            return None
        try:
            return Recovery.from_json(recovery)
        except ValueError as exc:
            raise ProviderError(f"the credentials Secret of {cluster}: {exc}") from None

    def _prepare_restore(self, instance_id: str, name: str | None, recovery: Recovery) -> None:
        """The new instance's credentials Secret, carrying where its data comes from until :meth:`ensure_created`
        makes the Cluster (a step that survives a restart of the conductor). Nothing changes once it exists."""
        if name is None:
            raise ProviderError(f"restoring instance {instance_id} needs its name")
        if self._find_cluster(instance_id) is not None:
            return
        cluster = _cnpg.cluster_name(instance_id, name)
        secret = self._get_secret(_cnpg.secret_name(cluster))
        password = (_cnpg.secret_password(secret) if secret else None) or secrets.token_urlsafe(24)
        body = _cnpg.render_secret(
            instance_id, name, password, namespace=self.namespace, annotations={_bk.RECOVERY: recovery.to_json()}
        )
        self._apply_secret(body)

    # --- reading and applying -----------------------------------------------------------------------------------

    def _find_cluster(self, instance_id: str) -> dict[str, Any] | None:
        name = self._names.get(instance_id)
        if name is not None:
            found = self._get_custom(_cnpg.CLUSTERS, name)
            if found is not None:
                return found
            self._names.pop(instance_id, None)
        clusters = self._list_custom(_cnpg.CLUSTERS, _cnpg.instance_selector(instance_id))
        if not clusters:
            return None
        if len(clusters) > 1:
            names = sorted(c["metadata"]["name"] for c in clusters)
            raise ProviderError(f"instance {instance_id} has {len(clusters)} Clusters: {', '.join(names)}")
        self._names[instance_id] = clusters[0]["metadata"]["name"]
        return clusters[0]

    def _state(self, instance_id: str) -> ClusterState | None:
        cluster = self._find_cluster(instance_id)
        if cluster is None:
            return None
        pooler = self._get_custom(_cnpg.POOLERS, _cnpg.pooler_name(cluster["metadata"]["name"]))
        state = _cnpg.parse_cluster(cluster, pooler)
        return _replace(state, instance_id=instance_id)

    def _require(self, instance_id: str) -> ClusterState:
        state = self._state(instance_id)
        if state is None:
            raise ProviderError(f"instance {instance_id} does not exist in namespace {self.namespace}")
        return state

    def _apply(self, state: ClusterState) -> None:
        """Secret (password generated once, then kept), Cluster, then the Pooler (or its removal)."""
        iid, name, ns = state.instance_id, state.name, self.namespace
        cluster = _cnpg.cluster_name(iid, name)
        secret = self._get_secret(_cnpg.secret_name(cluster))
        password = (_cnpg.secret_password(secret) if secret else None) or secrets.token_urlsafe(24)
        pending = {_bk.RECOVERY: state.recovery.to_json()} if state.recovery else None
        self._apply_secret(_cnpg.render_secret(iid, name, password, namespace=ns, org=state.org, annotations=pending))
        body = _cnpg.render_cluster(
            iid, name, state.shape, state.settings, namespace=ns, image=state.image, org=state.org,
            hibernated=state.hibernated, restarted_at=state.restarted_at, plugins=state.plugins,
            recovery=state.recovery,
        )  # fmt: skip
        self._apply_custom(_cnpg.CLUSTERS, body)
        self._names[iid] = cluster
        pooler = _cnpg.render_pooler(iid, name, state.shape, namespace=ns, org=state.org)
        if pooler is not None:
            self._apply_custom(_cnpg.POOLERS, pooler)
        else:
            self._delete_custom(_cnpg.POOLERS, _cnpg.pooler_name(cluster))

    def _wait_accepting(self, instance_id: str, what: str) -> InstanceStatus:
        deadline = time.monotonic() + self.wait_timeout
        while True:
            cluster = self._find_cluster(instance_id)
            status = _cnpg.instance_status(cluster)
            if status.accepting_connections:
                return status
            if cluster is None:
                raise ProviderError(f"instance {instance_id} does not exist in namespace {self.namespace}")
            if time.monotonic() >= deadline:
                phase = _cnpg.phase(cluster) or "no status yet"
                raise TransientProviderError(
                    f"instance {instance_id} does not accept connections {self.wait_timeout:g}s after {what} "
                    f"(operator phase: {phase})"
                )
            time.sleep(self.poll_interval)

    # --- the API calls (every failure is translated here) -------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], _T], *, missing_ok: bool = False) -> _T | None:
        try:
            return fn()
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise _translate(exc, what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, what) from exc

    def _get_custom(self, plural: str, name: str, *, api: tuple[str, str] = _CNPG) -> dict[str, Any] | None:
        found = self._call(
            f"reading {plural}/{name}",
            lambda: self._custom.get_namespaced_custom_object(*api, self.namespace, plural, name),
            missing_ok=True,
        )
        return _as_dict(found) if found is not None else None

    def _list_custom(self, plural: str, selector: str, *, api: tuple[str, str] = _CNPG) -> list[dict[str, Any]]:
        found = self._call(
            f"listing {plural}",
            lambda: self._custom.list_namespaced_custom_object(*api, self.namespace, plural, label_selector=selector),
        )
        return _matching(_as_dict(found).get("items") or [], selector)

    def _apply_custom(self, plural: str, body: dict[str, Any], *, api: tuple[str, str] = _CNPG) -> None:
        """Server-side apply of ``body``, once it passes the operator's admission rules as far as Howdah knows
        them (:mod:`howdah.providers._cnpg_admission`): a refusal is a permanent error naming the operator's rule,
        not an object the webhook turns away halfway through an operation."""
        name = body["metadata"]["name"]
        refused = _cnpg_admission.refusals(body)
        if refused:
            reasons = "; ".join(str(refusal) for refusal in refused)
            raise ProviderError(f"CloudNativePG would refuse {plural}/{name}: {reasons}")
        self._call(
            f"applying {plural}/{name}",
            lambda: self._custom.patch_namespaced_custom_object(
                *api, self.namespace, plural, name, body,
                field_manager=FIELD_MANAGER, force=True, field_validation=FIELD_VALIDATION, _content_type=APPLY_PATCH,
            ),
        )  # fmt: skip

    def _delete_custom(self, plural: str, name: str) -> None:
        self._call(
            f"deleting {plural}/{name}",
            lambda: self._custom.delete_namespaced_custom_object(
                _cnpg.GROUP, _cnpg.VERSION, self.namespace, plural, name
            ),
            missing_ok=True,
        )

    def _get_secret(self, name: str) -> dict[str, Any] | None:
        found = self._call(
            f"reading secrets/{name}",
            lambda: self._core.read_namespaced_secret(name, self.namespace),
            missing_ok=True,
        )
        return found.to_dict(serialize=True) if found is not None else None

    def _list_secrets(self, selector: str) -> list[dict[str, Any]]:
        found = self._call(
            "listing secrets",
            lambda: self._core.list_namespaced_secret(self.namespace, label_selector=selector),
        )
        items = found.to_dict(serialize=True).get("items") or [] if found is not None else []
        return _matching(items, selector)

    def _apply_secret(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        self._call(
            f"applying secrets/{name}",
            lambda: self._core.patch_namespaced_secret(
                name,
                self.namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                field_validation=FIELD_VALIDATION,
                _content_type=APPLY_PATCH,
            ),
        )

    def _delete_secret(self, name: str) -> None:
        self._call(
            f"deleting secrets/{name}",
            lambda: self._core.delete_namespaced_secret(name, self.namespace),
            missing_ok=True,
        )


def _as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderError(f"unexpected answer from the Kubernetes API: {type(value).__name__}")
    return value


def _matching(items: Sequence[Mapping[str, Any]], selector: str) -> list[dict[str, Any]]:
    """The items whose labels match an equality-only ``selector`` (the API filters already; this double-checks)."""
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return [
        dict(item)
        for item in items
        if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
    ]


def _shape(spec: SpecLike) -> ClusterShape:
    pooler = spec.connection_pooler
    return ClusterShape(
        pg_version=spec.pg_version, cpu=spec.cpu, memory=spec.memory, storage=spec.storage, replicas=spec.replicas,
        connection_pooler=_cnpg.PoolerShape(
            enabled=pooler.enabled, pool_mode=pooler.pool_mode,
            max_client_connections=pooler.max_client_connections, default_pool_size=pooler.default_pool_size,
        ),
        ip_allow_list=tuple(spec.ip_allow_list),
    )  # fmt: skip


def _replace(state: ClusterState, *, spec: InstanceSpec | None = None, **changes: Any) -> ClusterState:
    if spec is not None:
        changes["shape"] = _shape(spec)
    if changes.get("org", state.org) is None:
        changes["org"] = state.org
    return replace(state, **changes)


__all__ = ["APPLY_PATCH", "FIELD_MANAGER", "KubernetesProvider", "default_api_client"]
