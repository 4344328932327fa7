"""The HTTP side every service shares: health, metrics, AsyncAPI, command status (FastAPI)."""

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        self.what = what


def base_app(title: str, lifespan) -> FastAPI:
    app = FastAPI(title=title, lifespan=lifespan)

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
