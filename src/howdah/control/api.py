"""The control plane's HTTP API (FastAPI): JSON errors everywhere, OpenAPI at /openapi.json."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from howdah.control import stacks
from howdah.control.errors import Conflict, ControlError, Invalid, NotFound
from howdah.control.service import (
    ControlPlane,
    Principal,
    instance_view,
    list_backups,
    request_backup,
    require,
    restore_backup,
)
from howdah.control.spec import ConnectionPooler, Extension, InstanceSpec, Stack
from howdah.errors import HowdahError

MAX_BODY_BYTES = 64 * 1024


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


class InstancePage(BaseModel):
    items: list[Instance]
    total: int
    next_offset: int | None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "member", "viewer"]
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


class BackupInfo(BaseModel):
    id: str
    instance_id: str
    status: str
    size_bytes: int | None
    error: str | None
    created_at: str | None
    completed_at: str | None


class RestoreRequest(BaseModel):
    """A new instance, named ``name``, from a completed backup (same spec as the backed-up instance)."""

    model_config = ConfigDict(extra="forbid")

    backup_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=40)
    data_plane: str | None = Field(default=None, max_length=31)


class DataPlaneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(default="", max_length=500)


class DataPlane(BaseModel):
    name: str
    queue_name: str
    description: str


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (401 when missing, unknown or revoked)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    control: ControlPlane = request.app.state.control
    return await control.authenticate(token.strip() if scheme.lower() == "bearer" else None)


def control_of(request: Request) -> ControlPlane:
    return request.app.state.control  # type: ignore[no-any-return]


Auth = Annotated[Principal, Depends(principal)]
Ctl = Annotated[ControlPlane, Depends(control_of)]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 503)
}


def create_app(dsn: str, *, pool_size: int = 10) -> FastAPI:
    """The API bound to the control-plane database at ``dsn`` (schemas installed beforehand)."""
    registry = CollectorRegistry()
    requests = Counter("howdah_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("howdah_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)
    by_state = Gauge("howdah_instances", "Instances by state", ["state"], registry=registry)
    depth = Gauge("howdah_queue_depth", "Messages waiting per queue", ["queue"], registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False)
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        app.state.control = ControlPlane(pool)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="Howdah control plane", version="1", lifespan=lifespan, responses=ERRORS)

    # ---------------------------------------------------------------------------------------- errors
    @app.exception_handler(ControlError)
    async def control_error(request: Request, exc: ControlError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Conflict) and exc.retry_after else None
        return _error(exc.status_code, exc.code, str(exc), headers)

    @app.exception_handler(HowdahError)
    async def howdah_error(request: Request, exc: HowdahError) -> JSONResponse:
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}")
        return _error(422, "invalid", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        return _error(422, "invalid", "a value contains characters Postgres cannot store (for example NUL)")

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return _error(
            503, "unavailable", "the control-plane database is unreachable; retry shortly", {"Retry-After": "5"}
        )

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

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.pool.connection() as conn:
                await conn.execute("SELECT 1 FROM control.instances LIMIT 1")
        except psycopg.Error as exc:
            return _error(503, "not_ready", f"database not ready: {str(exc).strip()[:200]}")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        async with request.app.state.pool.connection() as conn:
            cur = await conn.execute("SELECT state, count(*) FROM control.instances GROUP BY state")
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
    @app.get("/api/v1/data-planes", tags=["data planes"])
    async def list_planes(who: Auth, ctl: Ctl) -> list[DataPlane]:
        require(who, who.org_id, "admin")
        return [DataPlane(**row) for row in await ctl.list_data_planes()]

    @app.post("/api/v1/data-planes", tags=["data planes"], status_code=201)
    async def add_plane(body: DataPlaneCreate, who: Auth, ctl: Ctl) -> DataPlane:
        require(who, who.org_id, "admin")
        return DataPlane(**await ctl.register_data_plane(body.name, body.description))

    # ---------------------------------------------------------------------------------------- tokens
    @app.post("/api/v1/orgs/{org_id}/tokens", tags=["tokens"], status_code=201)
    async def new_token(org_id: str, body: TokenCreate, who: Auth, ctl: Ctl) -> TokenCreated:
        require(who, org_id, "admin")
        token, row = await ctl.create_token(org_id, body.role, body.name)
        return TokenCreated(id=row["id"], org_id=org_id, role=row["role"], name=row["name"], token=token)

    @app.get("/api/v1/orgs/{org_id}/tokens", tags=["tokens"])
    async def tokens(org_id: str, who: Auth, ctl: Ctl) -> list[TokenInfo]:
        require(who, org_id, "admin")
        return [TokenInfo(**row) for row in await ctl.list_tokens(org_id) if row["revoked_at"] is None]

    @app.delete("/api/v1/orgs/{org_id}/tokens/{token_id}", tags=["tokens"], status_code=204)
    async def revoke(org_id: str, token_id: str, who: Auth, ctl: Ctl) -> Response:
        require(who, org_id, "admin")
        await ctl.revoke_token(org_id, token_id)
        return Response(status_code=204)

    # ------------------------------------------------------------------------------------- instances
    base = "/api/v1/orgs/{org_id}/instances"

    @app.post(base, tags=["instances"], status_code=202)
    async def create(org_id: str, body: InstanceCreate, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        spec = InstanceSpec.model_validate(body.model_dump(exclude={"data_plane"}))
        return Instance(**instance_view(await ctl.create_instance(org_id, spec, body.data_plane), who))

    @app.get(base, tags=["instances"])
    async def list_instances(
        org_id: str, who: Auth, ctl: Ctl,
        state: Annotated[str | None, Query(max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> InstancePage:  # fmt: skip
        require(who, org_id, "viewer")
        rows, total = await ctl.list_instances(org_id, state, limit, offset)
        items = [Instance(**instance_view(r, who)) for r in rows]
        more = offset + len(items) < total
        return InstancePage(items=items, total=total, next_offset=offset + len(items) if more else None)

    @app.get(base + "/{instance_id}", tags=["instances"])
    async def get_one(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "viewer")
        return Instance(**instance_view(await ctl.get_instance(org_id, instance_id), who))

    @app.patch(base + "/{instance_id}", tags=["instances"], status_code=202)
    async def patch(org_id: str, instance_id: str, body: InstancePatch, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        changes = body.model_dump(mode="json", exclude_unset=True)
        if not changes:
            raise Invalid("nothing to change: send at least one field")
        return Instance(**instance_view(await ctl.change(org_id, instance_id, "Update", changes), who))

    @app.delete(base + "/{instance_id}", tags=["instances"], status_code=202)
    async def delete(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        return Instance(**instance_view(await ctl.change(org_id, instance_id, "Delete"), who))

    @app.post(base + "/{instance_id}/backups", tags=["backups"], status_code=202)
    async def backup(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> BackupInfo:
        require(who, org_id, "member")
        return BackupInfo(**await request_backup(ctl, org_id, instance_id))

    @app.get(base + "/{instance_id}/backups", tags=["backups"])
    async def backups(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> list[BackupInfo]:
        require(who, org_id, "viewer")
        await ctl.get_instance(org_id, instance_id)  # 404 for an unknown instance
        return [BackupInfo(**b) for b in await list_backups(ctl, org_id, instance_id)]

    @app.post("/api/v1/orgs/{org_id}/restore", tags=["backups"], status_code=202)
    async def restore(org_id: str, body: RestoreRequest, who: Auth, ctl: Ctl) -> Instance:
        require(who, org_id, "member")
        row = await restore_backup(ctl, org_id, body.backup_id, body.name, body.data_plane)
        return Instance(**instance_view(row, who))

    def lifecycle(kind: Literal["Restart", "Stop", "Start"]) -> Callable[..., Awaitable[Instance]]:
        async def act(org_id: str, instance_id: str, who: Auth, ctl: Ctl) -> Instance:
            require(who, org_id, "member")
            return Instance(**instance_view(await ctl.change(org_id, instance_id, kind), who))

        return act

    kinds: tuple[Literal["Restart", "Stop", "Start"], ...] = ("Restart", "Stop", "Start")
    for kind in kinds:
        path = f"{base}/{{instance_id}}/{kind.lower()}"
        app.post(path, tags=["instances"], status_code=202, name=kind.lower())(lifecycle(kind))

    return app
