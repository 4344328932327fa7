"""The HTTP side every service shares: health, metrics, AsyncAPI, command status, bearer tokens (FastAPI)."""

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text

from .http_auth import BearerAuth, Forbidden, TokenHashes, forbidden_response, scope_check
from .read_scopes import is_public, scope_of


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        self.what = what


def base_app(title: str, lifespan, tokens: TokenHashes) -> FastAPI:
    """`title` is the service's name, which read_scopes.py's table is keyed by. No Swagger UI or ReDoc pages:
    a browser cannot send the bearer token they would need; /openapi.json is there for tools."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None,
                  dependencies=[Depends(scope_check(title))])
    app.add_middleware(BearerAuth, service=title, tokens=tokens)

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, error: Forbidden) -> JSONResponse:
        return forbidden_response(title, error)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"error": "not_found", "message": f"{error.what} not found"}, status_code=404)

    @app.get("/health/live")
    async def live() -> dict:
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        checks = await request.app.state.runtime.readiness()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi")
    async def asyncapi() -> dict:
        from platform_schemas.asyncapi import build_asyncapi

        return build_asyncapi()

    return app


def routes_without_scope(app: FastAPI, service: str) -> list[str]:
    """Routes that read_scopes.py does not name: nobody could read them (the dependency answers 403)."""
    return sorted(path for path in served_paths(app) if not is_public(path) and scope_of(service, path) is None)


def served_paths(app: FastAPI) -> set[str]:
    """Every path template the app answers: its own routes and those of the routers it includes (which this
    FastAPI keeps as included routers, not in `app.routes`, hence the OpenAPI document's paths)."""
    return {*get_openapi(title=app.title, version="0", routes=app.routes)["paths"],
            *(route.path for route in app.routes if hasattr(route, "path"))}


def command_status_router() -> APIRouter:
    """GET /commands/{id}: what became of a command (accepted, rejected, completed) and its outcome."""
    router = APIRouter()

    @router.get("/commands/{command_id}")
    async def command_status(command_id: str, request: Request) -> dict:
        runtime = request.app.state.runtime
        inbox = runtime.tables["processed_messages"]
        async with runtime.session_factory() as session:
            row = (await session.execute(select(inbox).where(inbox.c.message_id == command_id))).mappings().first()
        if row is None or row["status"] in ("seen", "remembered"):
            raise NotFound(f"command {command_id}")
        body = {"command_id": command_id, "type": row["type"], "status": row["status"]}
        if row["outcome"] is not None:
            body["outcome"] = row["outcome"]
        return body

    return router


async def database_answers(session_factory) -> bool:
    try:
        async with session_factory() as session:
            await session.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return False
