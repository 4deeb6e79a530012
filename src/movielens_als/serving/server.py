"""``movielens-als serve``: the local registry's champion behind MLflow's own scoring server.

The app is ``mlflow.pyfunc.scoring_server.init(model)``, what ``mlflow models serve`` runs (here in the
current Python environment, no conda), with two changes: error bodies carry a one-line message and no
``stack_trace`` (a client never needs it, and it shows an attacker the code), and every answered request goes to
the endpoint's inference table as Model Serving logs it (:mod:`.inference`), where ``land`` harvests feedback.
"""

from __future__ import annotations

import json
import os
import socket
import time

from movielens_als.config import ENDPOINT_NAME
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.catalog import delta_path
from movielens_als.lakehouse.names import Namespace, payload_table
from movielens_als.lakehouse.spark import lakehouse_home
from movielens_als.ml import registry
from movielens_als.serving.champion import champion_version, load_version
from movielens_als.serving.inference import InferenceLog, now

MAX_BODY = 4 * 1024 * 1024  # 1,000 requests of 5,000 ratings fit well below this


def create_app(model, inference_log: InferenceLog | None = None):
    """MLflow's scoring server app for ``model``, with plain error bodies and a request size limit; every
    ``/invocations`` answer is recorded in ``inference_log`` when one is given."""
    from fastapi import Request
    from fastapi.responses import Response
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model)

    @app.middleware("http")
    async def plain_errors(request: Request, call_next):
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _error(413, "REQUEST_TOO_LARGE", f"request body over {MAX_BODY} bytes")
        response = await call_next(request)
        if response.status_code < 400:
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        code, message = _error_fields(body)
        return _error(response.status_code, code, message)

    def _error(status: int, code: str, message: str) -> Response:
        content = json.dumps({"error_code": code, "message": message})
        return Response(content=content, status_code=status, media_type="application/json")

    if inference_log is not None:  # outermost: it records what the client got
        app.add_middleware(InferenceLogMiddleware, log=inference_log)
    return app


class InferenceLogMiddleware:
    """Records each ``POST /invocations`` with its answer, as plain ASGI: the body passes through untouched (a
    ``BaseHTTPMiddleware`` would buffer and rebuild every response)."""

    def __init__(self, app, log: InferenceLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/invocations":
            await self.app(scope, receive, send)
            return
        received, began = now(), time.perf_counter()
        request, response, status = bytearray(), bytearray(), [500]

        async def receiving():
            message = await receive()
            if message["type"] == "http.request":
                request.extend(message.get("body", b""))
            return message

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                response.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receiving, sending)
        client = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        self.log.record(received, status[0], round((time.perf_counter() - began) * 1000),
                        request.decode("utf-8", "replace"), response.decode("utf-8", "replace"), client)  # fmt: skip


def _error_fields(body: bytes) -> tuple[str, str]:
    """(error code, one-line message) of a scoring server error body: no stack trace, no echo of the input."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {"message": body.decode("utf-8", "replace")}
    if not isinstance(payload, dict):
        payload = {"message": str(payload)}
    message = str(payload.get("message", ""))
    # The server wraps a model's own message as "Failed to predict data '<the whole input>'. \nError: <message>".
    message = message.rsplit("\nError: ", 1)[-1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return str(payload.get("error_code", "BAD_REQUEST")), (lines[0] if lines else "bad request")[:500]


def serve(
    namespace: Namespace, home: str | os.PathLike | None, host: str, port: int, endpoint_name: str = ENDPOINT_NAME
) -> int:
    """Serve the champion recommender at ``http://host:port/invocations`` until Ctrl-C; the exit code."""
    import uvicorn

    registry.configure(home)
    version = champion_version(namespace)
    check_free(host, port)
    model = load_version(namespace, version)
    name = registry.model_name(namespace, registry.RECOMMENDER_MODEL)
    table = payload_table(endpoint_name)
    log = InferenceLog(
        delta_path(lakehouse_home(home), namespace.schema, table), f"{name.rsplit('.', 1)[-1]}-{version}"
    )
    print(f"serving {name} version {version} (champion) at http://{host}:{port}/invocations; Ctrl-C stops", flush=True)
    print(f"requests are logged to {namespace.schema}.{table}", flush=True)
    try:
        uvicorn.run(create_app(model, log), host=host, port=port, log_level="warning")
    finally:
        log.close()
    print("stopped", flush=True)
    return 0


def check_free(host: str, port: int) -> None:
    """One error line, before the model loads, when the address is taken or not this machine's."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as exc:
        raise MovieLensAlsError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pass another --port or --host"
        ) from None
