"""The control plane's HTTP API (FastAPI): JSON errors everywhere, OpenAPI at /openapi.json."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg_pool import AsyncConnectionPool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from howdah.control import ENV_METRICS_OPEN_LOOPBACK, _metadata_cache, stacks
from howdah.control.backups import (
    delete_backup,
    list_backups,
    request_backup,
    request_verification,
    restore_backup,
    restore_point_in_time,
)
from howdah.control.errors import HTTP_STATUS, RETRY_AFTER_SECONDS, Forbidden, Invalid, NotFound, http_error, message_of
from howdah.control.logs import MAX_READ, read_logs
from howdah.control.memory_warnings import memory_warnings
from howdah.control.queries import QUERIES
from howdah.control.sealing import Sealer, default_sealer
from howdah.control.service import (
    DEFAULT_MAX_TOKENS_PER_ORG,
    ControlPlane,
    Principal,
    instance_view,
    may_issue,
    may_scrape_metrics,
    require,
    require_platform,
)
from howdah.control.spec import BackupPolicy, ConnectionPooler, Extension, InstanceSpec, Stack
from howdah.errors import ConfigurationError, HowdahError

MAX_BODY_BYTES = 64 * 1024
ENV_MAX_TOKENS = "HOWDAH_MAX_TOKENS_PER_ORG"  # active tokens per org (default 100)
POOL_TIMEOUT_SECONDS = 10.0  # a request waits this long for a database connection, then gets a 503

log = logging.getLogger("howdah.control.api")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class InstanceCreate(InstanceSpec):
    """An instance spec, plus where to place it."""

    data_plane: str | None = Field(default=None, max_length=31)


class InstancePatch(BaseModel):
    """Fields to change; omitted ones keep their value. The name cannot change."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | None = None
    memory: str | None = None
    storage: str | None = None
    replicas: StrictInt | None = Field(default=None, ge=1, le=5)
    extensions: list[Extension] | None = Field(default=None, max_length=100)
    postgres_configs: dict[str, str] | None = None
    ip_allow_list: list[str] | None = Field(default=None, max_length=100)
    connection_pooler: ConnectionPooler | None = None
    backup: BackupPolicy | None = None
    stack: Stack | None = None


class Instance(BaseModel):
    id: str
    org_id: str
    name: str
    data_plane: str
    state: str
    has_active_work: bool
    generation: int
    desired_spec: dict[str, Any]
    actual_spec: dict[str, Any] | None
    status: dict[str, Any]
    connection: dict[str, Any] | None
    last_error: str | None
    created_at: str | None
    updated_at: str | None
    warnings: list[str] = Field(
        default_factory=list,
        description="In the answer to a create or change: what was accepted but looks unwise (a memory setting "
        "larger than the instance's memory).",
    )


class LogLine(BaseModel):
    seq: int
    at: str | None = Field(description="When the control plane received it from the data plane.")
    server: str = Field(description="primary, or the replica's name")
    line: str


class InstanceLogs(BaseModel):
    instance_id: str
    lines: list[LogLine]
    next_after: int = Field(description="Pass as ``after`` to read on from here (``-f``).")


class InstancePage(BaseModel):
    items: list[Instance]
    total: int
    next_offset: int | None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "member", "viewer", "platform", "metrics"] = Field(
        description="platform and metrics tokens are issued by a platform admin only"
    )
    name: str = Field(default="", max_length=100)


class TokenCreated(BaseModel):
    id: str
    org_id: str
    role: str
    name: str
    token: str = Field(description="Shown once; only its hash is stored.")


class TokenInfo(BaseModel):
    id: str
    org_id: str
    role: str
    name: str
    prefix: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None


class WhoAmI(BaseModel):
    org_id: str
    role: str
    token_id: str


class BackupInfo(BaseModel):
    id: str
    instance_id: str
    status: str
    size_bytes: int | None
    error: str | None
    created_at: str | None
    completed_at: str | None


class RestoreRequest(BaseModel):
    """A new instance, named ``name``, with the spec of the instance it comes from: either from one completed
    backup (``backup_id``), or as instance ``source_instance_id`` was at ``target_time`` or ``target_lsn``
    (neither: the latest point archived)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    backup_id: str | None = Field(default=None, min_length=1, max_length=64)
    source_instance_id: str | None = Field(default=None, min_length=1, max_length=64)
    target_time: AwareDatetime | None = Field(default=None, description="e.g. 2026-12-05T10:00:00Z")
    target_lsn: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
                                   description="e.g. 0/3000060")  # fmt: skip
    data_plane: str | None = Field(default=None, max_length=31)

    @model_validator(mode="after")
    def _one_source(self) -> RestoreRequest:
        if (self.backup_id is None) == (self.source_instance_id is None):
            raise ValueError("give either backup_id or source_instance_id (with target_time, target_lsn or neither)")
        if self.backup_id is not None and (self.target_time or self.target_lsn):
            raise ValueError("target_time and target_lsn go with source_instance_id, not with backup_id")
        if self.target_time is not None and self.target_lsn is not None:
            raise ValueError("give target_time or target_lsn, not both")
        return self


class DataPlaneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(default="", max_length=500)


class DataPlanePatch(BaseModel):
    """Fields to change; ``draining``: no new instances are placed there (its instances stay)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=500)
    draining: StrictBool | None = None


class DataPlane(BaseModel):
    name: str
    queue_name: str
    description: str
    draining: bool
    created_at: datetime | None
    last_seen_at: datetime | None


class DataPlaneName(BaseModel):
    """A data plane the org may place instances on (its details are the platform admin's)."""

    name: str


class ReadinessCheck(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    """``status`` "ready" (200) or "not_ready" (503, with ``error`` saying which checks failed)."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, ReadinessCheck]
    error: ErrorBody | None = None


class AuditEntry(BaseModel):
    """One token change: which token, what happened, and who did it (``via`` "database": direct database
    access such as ``howdah up`` or ``howdah token create --via-database``, no token)."""

    id: int
    token_id: str
    action: str
    role: str
    name: str
    via: str
    actor_token_id: str | None
    actor_role: str | None
    at: datetime


# Declares the bearer-token scheme in the OpenAPI document (so /docs can "Authorize"); ``principal`` reads the
# header itself, also when called directly.
_BEARER = HTTPBearer(auto_error=False, scheme_name="token", description="An API token: hwd_…")


async def principal(
    request: Request, declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (401 when missing, unknown or revoked)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    control: ControlPlane = request.app.state.control
    return await control.authenticate(token.strip() if scheme.lower() == "bearer" else None)


async def control_of(request: Request) -> ControlPlane:
    """The control plane, once start-up has read what requests need (:func:`_warm_up`): a request that comes
    sooner waits for it here, without blocking the event loop."""
    await request.app.state.warm_up
    return request.app.state.control  # type: ignore[no-any-return]


Auth = Annotated[Principal, Depends(principal)]
Ctl = Annotated[ControlPlane, Depends(control_of)]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in sorted({401, 413, 422, 500, 503, *(s for s, _ in HTTP_STATUS.values())})
}


def _env_settings(max_tokens_per_org: int | None, metrics_open_loopback: bool | None) -> tuple[int, bool]:
    if max_tokens_per_org is None:
        raw = os.environ.get(ENV_MAX_TOKENS, "").strip()
        try:
            max_tokens_per_org = int(raw) if raw else DEFAULT_MAX_TOKENS_PER_ORG
        except ValueError:
            raise ConfigurationError(f"{ENV_MAX_TOKENS} must be a whole number, not {raw!r}") from None
    if max_tokens_per_org < 1:
        raise ConfigurationError(f"{ENV_MAX_TOKENS} must be at least 1, not {max_tokens_per_org}")
    if metrics_open_loopback is None:
        metrics_open_loopback = os.environ.get(ENV_METRICS_OPEN_LOOPBACK, "").strip().lower() in ("1", "true", "yes")
    return max_tokens_per_org, metrics_open_loopback


def _from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


async def _warm_up(sealer: Sealer) -> None:
    """Read, in worker threads, what the first requests would otherwise read on the event loop: Postgres's
    setting facts (a subprocess) and the sealing key (a file, written and synced to disk the first time)."""
    await _metadata_cache.warm_up()
    try:
        await asyncio.to_thread(sealer.seal, "", "start-up")  # a key file sealer reads (or creates) its key
    except (HowdahError, OSError) as exc:  # as before, requests that open a password fail and say why
        log.error("the sealing key cannot be read: %s", exc)


DOCS_ASSETS = "/docs-assets"


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the assets the ``swagger-ui-py`` package ships: no CDN, works offline."""
    assets = resources.files("swagger_ui") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )  # fmt: skip


def create_app(
    dsn: str,
    *,
    pool_size: int = 10,
    pool_timeout: float = POOL_TIMEOUT_SECONDS,
    max_tokens_per_org: int | None = None,
    metrics_open_loopback: bool | None = None,
    sealer: Sealer | None = None,
) -> FastAPI:
    """The API bound to the control-plane database at ``dsn`` (schemas installed beforehand).

    ``max_tokens_per_org`` (default ``$HOWDAH_MAX_TOKENS_PER_ORG`` or 100) caps each org's active tokens;
    ``metrics_open_loopback`` (default ``$HOWDAH_METRICS_OPEN_LOOPBACK``) lets clients on 127.0.0.1/::1 scrape
    ``/metrics`` without a token. Pooled connections are checked before each use, so a Postgres restart costs
    no request; a database that cannot be reached within ``pool_timeout`` seconds answers 503. ``sealer`` opens
    instance passwords (default :func:`~howdah.control.sealing.default_sealer`).
    """
    max_tokens, metrics_open = _env_settings(max_tokens_per_org, metrics_open_loopback)
    sealer = sealer or default_sealer()  # opens instance passwords; the conductors must seal with the same
    registry = CollectorRegistry()
    requests = Counter("howdah_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("howdah_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)
    by_state = Gauge("howdah_instances", "Instances by state", ["state"], registry=registry)
    depth = Gauge("howdah_queue_depth", "Messages waiting per queue", ["queue"], registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False, timeout=pool_timeout,
            check=AsyncConnectionPool.check_connection,
        )  # fmt: skip
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        app.state.control = ControlPlane(pool, max_tokens_per_org=max_tokens)
        app.state.warm_up = asyncio.create_task(_warm_up(sealer), name="howdah-api-warm-up")
        try:
            yield
        finally:
            app.state.warm_up.cancel()
            await asyncio.gather(app.state.warm_up, return_exceptions=True)
            await pool.close()

    app = FastAPI(
        title="Howdah control plane", version="1", lifespan=lifespan, responses=ERRORS, docs_url=None, redoc_url=None
    )
    app.state.sealer = sealer  # what else the process serves (the console) opens passwords with the same
    _offline_docs(app)

    # ---------------------------------------------------------------------------------------- errors
    def mapped(exc: Exception) -> JSONResponse:
        status, code, retry_after = http_error(exc)
        if status >= 500:
            log.log(logging.WARNING if status == 503 else logging.ERROR, "%s: %s", code, exc, exc_info=status != 503)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return _error(status, code, message_of(exc, status), headers)

    @app.exception_handler(HowdahError)
    async def howdah_error(request: Request, exc: HowdahError) -> JSONResponse:
        return mapped(exc)

    @app.exception_handler(psycopg.Error)
    async def database_error(request: Request, exc: psycopg.Error) -> JSONResponse:
        return mapped(exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return mapped(exc)  # JSON like every other error, never a stack trace

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}")
        return _error(422, "invalid", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        return _error(422, "invalid", "a value contains characters Postgres cannot store (for example NUL)")

    @app.middleware("http")
    async def guard_and_measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    # ----------------------------------------------------------------------------------------- health
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None, responses={200: {"model": Readiness}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready (200) when a create issued now would be accepted and acted on: the control database answers, a
        reconciler ticks, and a data plane that is not draining has a live conductor that registered what a
        create is checked against. Otherwise 503 with Retry-After, naming in words each check that failed."""
        checks = await request.app.state.control.readiness()
        body = {"status": "ready", "checks": {c.name: c.to_json() for c in checks}}
        failed = [c.detail for c in checks if not c.ok]
        if not failed:
            return JSONResponse(body)
        body["status"] = "not_ready"
        body["error"] = {"code": "not_ready", "message": "not ready: " + "; ".join(failed)}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.get(
        "/metrics", tags=["health"], response_model=None,
        responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}},
    )  # fmt: skip
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: every org's queues and counts, so a metrics or platform token is needed (or a
        client on loopback, when the API is configured so)."""
        if not (metrics_open and _from_loopback(request)):
            who = await principal(request)
            if not may_scrape_metrics(who):
                raise Forbidden(f"/metrics needs a metrics or platform token; the token has {who.role}")
        async with request.app.state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["instances_by_state"])
            by_state.clear()
            for state, count in await cur.fetchall():
                by_state.labels(state).set(count)
            cur = await conn.execute("SELECT queue_name, queue_length FROM pgmq.metrics_all()")
            depth.clear()
            for queue, length in await cur.fetchall():
                depth.labels(queue).set(length)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------------------ stacks
    @app.get("/api/v1/stacks", tags=["stacks"])
    async def list_stacks(who: Auth) -> list[dict[str, Any]]:
        return [stacks.describe_stack(name) for name in stacks.STACKS]

    @app.get("/api/v1/stacks/{name}", tags=["stacks"])
    async def get_stack(name: str, who: Auth) -> dict[str, Any]:
        try:
            return stacks.describe_stack(name)
        except stacks.UnknownStack as exc:
            raise NotFound(str(exc)) from exc

    # ---------------------------------------------------------------------------------- data planes
    # Shared by every org: only the platform admin sees their details and changes them.
    @app.get("/api/v1/data-planes", tags=["data planes"])
    async def list_planes(who: Auth, ctl: Ctl) -> list[DataPlane]:
        require_platform(who)
        return [DataPlane(**row) for row in await ctl.list_data_planes()]

    @app.post("/api/v1/data-planes", tags=["data planes"], status_code=201)
    async def add_plane(body: DataPlaneCreate, who: Auth, ctl: Ctl) -> DataPlane:
        require_platform(who)
        return DataPlane(**await ctl.create_data_plane(body.name, body.description))

    @app.patch("/api/v1/data-planes/{name}", tags=["data planes"])
    async def change_plane(name: str, body: DataPlanePatch, who: Auth, ctl: Ctl) -> DataPlane:
        require_platform(who)
        if body.description is None and body.draining is None:
            raise Invalid("nothing to change: send description or draining")
        return DataPlane(**await ctl.update_data_plane(name, body.description, body.draining))

    @app.delete("/api/v1/data-planes/{name}", tags=["data planes"], status_code=204)
    async def remove_plane(name: str, who: Auth, ctl: Ctl) -> Response:
        require_platform(who)
        await ctl.delete_data_plane(name)
        return Response(status_code=204)

    @app.get("/api/v1/orgs/{org_id}/data-planes", tags=["data planes"])
    async def org_planes(org_id: str, who: Auth, ctl: Ctl) -> list[DataPlaneName]:
        require(who, org_id, "viewer")
        return [DataPlaneName(name=name) for name in await ctl.usable_data_plane_names()]

    @app.get("/api/v1/orgs/{org_id}/data-planes/{name}/extensions", tags=["data planes"])
    async def plane_extensions(org_id: str, name: str, who: Auth, ctl: Ctl) -> dict[str, Any]:
        """The extensions data plane ``name`` offers, as its conductor reported them (``reported`` false: none
        yet, and extension names are then not checked before the data plane runs the change)."""
        require(who, org_id, "viewer")
        catalog = await ctl.data_plane_extensions(name)
        if catalog is None:
            return {"data_plane": name, "reported": False, "source": "", "extensions": [], "setting_contexts": {}}
        return {"data_plane": name, "reported": True, **catalog.to_json()}

    # ---------------------------------------------------------------------------------------- tokens
    @app.get("/api/v1/whoami", tags=["tokens"])
    async def whoami(who: Auth) -> WhoAmI:
        """The calling token's org, role and id (any valid token; 401 otherwise): what a client checks a token
        against before saving it."""
        return WhoAmI(org_id=who.org_id, role=who.role, token_id=who.token_id)

    @app.post("/api/v1/orgs/{org_id}/tokens", tags=["tokens"], status_code=201)
    async def new_token(org_id: str, body: TokenCreate, who: Auth, ctl: Ctl) -> TokenCreated:
        may_issue(who, org_id, body.role)
        token, row = await ctl.create_token(org_id, body.role, body.name, actor=who)
        return TokenCreated(id=row["id"], org_id=org_id, role=row["role"], name=row["name"], token=token)

    @app.get("/api/v1/orgs/{org_id}/tokens", tags=["tokens"])
    async def tokens(org_id: str, who: Auth, ctl: Ctl) -> list[TokenInfo]:
        require(who, org_id, "admin")
        return [TokenInfo(**row) for row in await ctl.list_tokens(org_id) if row["revoked_at"] is None]

    @app.delete("/api/v1/orgs/{org_id}/tokens/{token_id}", tags=["tokens"], status_code=204)
    async def revoke(org_id: str, token_id: str, who: Auth, ctl: Ctl) -> Response:
        require(who, org_id, "admin")
        await ctl.revoke_token(org_id, token_id, actor=who)
        return Response(status_code=204)

    @app.get("/api/v1/orgs/{org_id}/audit", tags=["tokens"])
    async def audit(org_id: str, who: Auth, ctl: Ctl) -> list[AuditEntry]:
        """The org's token changes (created, revoked), oldest first: the latest 1,000."""
        require(who, org_id, "admin")
        return [AuditEntry(**row) for row in await ctl.token_audit(org_id)]

    # ------------------------------------------------------------------------------------- instances
    base = "/api/v1/orgs/{org_id}/instances"

    @app.post(base, tags=["instances"], status_code=202)
    async def create(org_id: str, body: InstanceCreate, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        spec = InstanceSpec.model_validate(body.model_dump(exclude={"data_plane"}))
        view = instance_view(await ctl.create_instance(org_id, spec, body.data_plane), who, sealer)
        return Instance(**view, warnings=memory_warnings(view["desired_spec"]))

    @app.get(base, tags=["instances"])
    async def list_instances(
        org_id: str, who: Auth, ctl: Ctl,
        state: Annotated[str | None, Query(max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> InstancePage:  # fmt: skip
        require(who, org_id, "viewer")
        rows, total = await ctl.list_instances(org_id, state, limit, offset)
        items = [Instance(**instance_view(r, who, sealer)) for r in rows]
        more = offset + len(items) < total
        return InstancePage(items=items, total=total, next_offset=offset + len(items) if more else None)

    @app.get(base + "/{instance_id}", tags=["instances"])
    async def get_one(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "viewer")
        return Instance(**instance_view(await ctl.get_instance(org_id, instance_id), who, sealer))

    @app.patch(base + "/{instance_id}", tags=["instances"], status_code=202)
    async def patch(org_id: str, instance_id: str, body: InstancePatch, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        changes = body.model_dump(mode="json", exclude_unset=True)
        if not changes:
            raise Invalid("nothing to change: send at least one field")
        view = instance_view(await ctl.change(org_id, instance_id, "Update", changes), who, sealer)
        return Instance(**view, warnings=memory_warnings(view["desired_spec"]))

    @app.delete(base + "/{instance_id}", tags=["instances"], status_code=202)
    async def delete(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        return Instance(**instance_view(await ctl.change(org_id, instance_id, "Delete"), who, sealer))

    @app.get(base + "/{instance_id}/logs", tags=["instances"])
    async def logs(
        org_id: str, instance_id: str, who: Auth, ctl: Ctl,
        after: Annotated[int, Query(ge=0)] = 0,
        since: Annotated[AwareDatetime | None, Query(description="e.g. 2026-12-05T10:00:00Z")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_READ)] = MAX_READ,
    ) -> InstanceLogs:  # fmt: skip
        """The instance's Postgres log lines as its data plane shipped them (the newest few thousand kept), oldest
        first: those after ``after`` (a ``seq``), received since ``since``."""
        require(who, org_id, "viewer")
        return InstanceLogs(**await read_logs(ctl, org_id, instance_id, after, since, limit))

    @app.post(base + "/{instance_id}/backups", tags=["backups"], status_code=202)
    async def backup(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> BackupInfo:
        require(who, org_id, "member")
        return BackupInfo(**await request_backup(ctl, org_id, instance_id))

    @app.post(base + "/{instance_id}/verify-backup", tags=["backups"], status_code=202)
    async def verify_backup(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
        """Verify the instance's latest backup: its data plane restores it (with the archived WAL) into a scratch
        instance, checks that it starts and answers a query, and deletes it; the outcome shows in the status as
        ``last_verified_restore`` ({at, ok, seconds, error})."""
        require(who, org_id, "member")
        return Instance(**instance_view(await request_verification(ctl, org_id, instance_id), who, sealer))

    @app.get(base + "/{instance_id}/backups", tags=["backups"])
    async def backups(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> list[BackupInfo]:
        require(who, org_id, "viewer")
        await ctl.get_instance(org_id, instance_id)  # 404 for an unknown instance
        return [BackupInfo(**b) for b in await list_backups(ctl, org_id, instance_id)]

    @app.get("/api/v1/orgs/{org_id}/backups", tags=["backups"])
    async def org_backups(
        org_id: str, who: Auth, ctl: Ctl, instance_id: Annotated[str | None, Query(max_length=64)] = None
    ) -> list[BackupInfo]:
        """The org's backups, of one instance with ``instance_id`` (also after that instance was deleted)."""
        require(who, org_id, "viewer")
        return [BackupInfo(**b) for b in await list_backups(ctl, org_id, instance_id)]

    @app.delete("/api/v1/orgs/{org_id}/backups/{backup_id}", tags=["backups"], status_code=202)
    async def drop_backup(
        org_id: str, backup_id: Annotated[str, Path(max_length=64)], who: Auth, ctl: Ctl
    ) -> BackupInfo:
        """Delete a backup (the one returned, as it was): unlisted at once, its files and the archived WAL no
        other backup needs removed by its data plane. 409 saying why when it would lose a point of the window its
        instance's retention keeps, or while it is being taken."""
        require(who, org_id, "member")
        return BackupInfo(**await delete_backup(ctl, org_id, backup_id))

    @app.post("/api/v1/orgs/{org_id}/restore", tags=["backups"], status_code=202)
    async def restore(org_id: str, body: RestoreRequest, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        if body.backup_id is not None:
            row = await restore_backup(ctl, org_id, body.backup_id, body.name, body.data_plane)
        else:
            assert body.source_instance_id is not None
            row = await restore_point_in_time(
                ctl, org_id, body.source_instance_id, body.name, target_time=body.target_time,
                target_lsn=body.target_lsn, data_plane=body.data_plane,
            )  # fmt: skip
        return Instance(**instance_view(row, who, sealer))

    def lifecycle(kind: Literal["Restart", "Stop", "Start"]) -> Callable[..., Awaitable[Instance]]:
        async def act(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
            require(who, org_id, "member")
            return Instance(**instance_view(await ctl.change(org_id, instance_id, kind), who, sealer))

        return act

    kinds: tuple[Literal["Restart", "Stop", "Start"], ...] = ("Restart", "Stop", "Start")
    for kind in kinds:
        path = f"{base}/{{instance_id}}/{kind.lower()}"
        app.post(path, tags=["instances"], status_code=202, name=kind.lower())(lifecycle(kind))

    return app
