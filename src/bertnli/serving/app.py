"""The HTTP service: a FastAPI app around an `NLIModel`, and `serve` to run it with uvicorn.

Endpoints: ``POST /predict``, ``GET /health``, ``GET /model``; OpenAPI docs at ``/docs``. Concurrent
requests are answered by shared model calls (see `bertnli.serving.batcher`). Every error is JSON with a
one-line ``detail``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.config import LOGGING_CONFIG

from bertnli import __version__
from bertnli.data.example import NLI_LABELS
from bertnli.errors import ConfigError
from bertnli.inference import NLIModel
from bertnli.runtime import precision_name
from bertnli.serving.batcher import Batcher, ModelFailed, ServiceClosed
from bertnli.serving.schemas import (
    ErrorOut,
    Health,
    Limits,
    ModelInfo,
    Pair,
    PredictionOut,
    PredictRequest,
    PredictResponse,
)
from bertnli.weights.native import resolve_model_dir

logger = logging.getLogger(__name__)
_SHAPE = '{"pairs": [{"premise": "...", "hypothesis": "..."}]}'

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "A body that is not JSON (malformed, or not UTF-8 text)"),
        (413, "Too many pairs, or a text too long"),
        (422, "JSON of the wrong shape: missing fields or wrong types"),
        (500, "The model failed; details are in the server log"),
        (503, "The service is starting or shutting down"),
    )
}


#: Characters allowed in a text for each token the model reads, by default: English runs 4 to 5 characters a
#: token, so a text that reaches the limit is one the model reads cut anyway.
CHARS_PER_TOKEN = 16


def create_app(
    model: NLIModel,
    *,
    max_pairs: int = 256,
    max_chars: int | None = None,
    max_batch_pairs: int | None = None,
    max_wait_ms: float = 5,
    name: str = "bertnli",
) -> FastAPI:
    """A FastAPI app serving ``model``. Its lifespan starts and stops the batching worker. ``max_chars`` (None:
    `CHARS_PER_TOKEN` for each token the model reads) caps each text, and ``max_batch_pairs`` (None: by device,
    see `default_batch_pairs`) the pairs of one model call."""
    max_chars = max_chars or CHARS_PER_TOKEN * model.max_len
    max_batch_pairs = max_batch_pairs or default_batch_pairs(model.device)
    limits = Limits(max_pairs=max_pairs, max_chars=max_chars, max_batch_pairs=max_batch_pairs, max_wait_ms=max_wait_ms)
    batcher = Batcher(lambda premises, hypotheses: model.predict(zip(premises, hypotheses)), max_batch_pairs,
                      max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        forced = False
        try:
            yield
        except asyncio.CancelledError:  # a forced quit (a second Ctrl-C): the process is on its way out
            forced = True
        finally:
            if forced:
                batcher.abort()  # answers what is pending, and waits for nothing
            else:
                await batcher.close()

    app = FastAPI(
        title="bertnli",
        version=__version__,
        description=f"Natural language inference with `{name}`: {_question(model.labels)} "
        f"Labels: {', '.join(model.labels)}.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _unreadable_body)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes(max_pairs, max_chars))
    info = _model_info(model, name, limits)

    @app.post("/predict", response_model=PredictResponse, responses=_ERRORS, summary="Classify pairs")
    async def predict(request: PredictRequest) -> PredictResponse:
        _check_limits(request.pairs, limits)
        try:
            predictions = await batcher.submit([p.premise for p in request.pairs],
                                               [p.hypothesis for p in request.pairs])
        except ModelFailed:
            raise HTTPException(500, "the model failed on this request; the error is in the server log") from None
        except ServiceClosed as exc:
            raise HTTPException(503, str(exc)) from None
        except asyncio.CancelledError:  # a forced quit (a second Ctrl-C) cancels the requests in flight
            raise HTTPException(503, "the server is shutting down") from None
        return PredictResponse(model=name, predictions=[PredictionOut(id=pair.id, **p.to_dict())
                                                        for pair, p in zip(request.pairs, predictions)])

    @app.get("/health", response_model=Health, summary="Liveness")
    async def health() -> Health:
        if not batcher.running:
            raise HTTPException(503, "the prediction service is not running")
        return Health(status="ok")

    @app.get("/model", response_model=ModelInfo, summary="The model and the server's limits")
    async def model_info() -> ModelInfo:
        return info

    schema_without_limits = app.openapi
    app.openapi = lambda: _with_limits(schema_without_limits(), limits)  # type: ignore[method-assign]
    return app


def _with_limits(schema: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The OpenAPI schema stating this server's limits (``maxItems``, ``maxLength``), which clients and
    generated code can check before sending."""
    schemas = schema["components"]["schemas"]
    schemas["PredictRequest"]["properties"]["pairs"]["maxItems"] = limits.max_pairs
    for text in ("premise", "hypothesis"):
        schemas["Pair"]["properties"][text]["maxLength"] = limits.max_chars
    return schema


def default_batch_pairs(device: torch.device) -> int:
    """Pairs of concurrent requests in one model call: 1024 keep a GPU busy; a CPU is as fast on far fewer,
    and a short request then waits on less (2-core EPYC, 200 clients of 1-8 pairs: 128 gave 249 pairs/s and a
    p99 latency of 4.0 s, 1024 gave 214 pairs/s and 7.6 s; `benchmarks/serve_load.py`)."""
    return 1024 if device.type == "cuda" else 128


def _question(labels: list[str]) -> str:
    """What a model of these labels answers."""
    if set(labels) == set(NLI_LABELS):
        return "does the premise entail the hypothesis, contradict it, or neither?"
    return "does the premise entail the hypothesis?"


def max_body_bytes(max_pairs: int, max_chars: int) -> int:
    """The largest body a request within the limits can take: every character escaped as JSON's 12-byte
    surrogate pair, plus room for keys and spaces. Larger bodies are refused before they are read."""
    return max_pairs * (2 * 12 * max_chars + 256) + 1024


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, told by its Content-Length or, when sent in chunks,
    by counting, before the body is read whole or parsed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(receive, send)

    async def _refuse(self, receive: Any, send: Any) -> None:
        detail = f"the request body is over {self.max_bytes:,} bytes, more than the server's limits allow"
        await JSONResponse({"detail": detail}, status_code=413)({"type": "http"}, receive, send)


class _TooLarge(BaseException):  # not an Exception: FastAPI turns those met while reading a body into 400s
    pass


def _model_info(model: NLIModel, name: str, limits: Limits) -> ModelInfo:
    return ModelInfo(
        name=name,
        labels=model.labels,
        max_len=model.max_len,
        parameters=model.parameter_count,
        device=str(model.device),
        precision=precision_name(model.dtype),
        version=__version__,
        config=model.network.config.to_dict(),
        limits=limits,
    )


def _check_limits(pairs: Sequence[Pair], limits: Limits) -> None:
    """413 for more than ``max_pairs`` pairs or a text longer than ``max_chars``."""
    if len(pairs) > limits.max_pairs:
        raise HTTPException(413, f"{len(pairs)} pairs in one request; the limit is {limits.max_pairs}")
    for i, pair in enumerate(pairs):
        for field in ("premise", "hypothesis"):
            size = len(getattr(pair, field))
            if size > limits.max_chars:
                raise HTTPException(
                    413, f"pairs[{i}].{field} has {size} characters; the limit is {limits.max_chars}"
                )


#: What FastAPI says of a body it cannot decode at all (not UTF-8: a compressed or binary body).
_UNPARSED_BODY = "There was an error parsing the body"


async def _unreadable_body(request: Request, exc: Exception) -> Any:
    """FastAPI's 400 for a body it cannot decode, told in words a client can act on; other HTTP errors as
    FastAPI tells them."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSED_BODY:
        encoding, cause = request.headers.get("content-encoding"), exc.__cause__
        if encoding:
            problem = f"sent with content-encoding: {encoding}, which is not read; send it uncompressed"
        elif isinstance(cause, UnicodeDecodeError):
            problem = "not UTF-8 text; send JSON encoded in UTF-8"
        else:  # a number of thousands of digits, nesting deeper than Python reads, ...
            problem = f"not JSON this server can read ({str(cause).partition(';')[0] or type(cause).__name__})"
        return JSONResponse({"detail": f"invalid request: body: {problem}"}, status_code=400)
    return await http_exception_handler(request, exc)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's validation errors as one readable line plus a list of (location, message)."""
    assert isinstance(exc, RequestValidationError)
    errors = [_error_item(error) for error in exc.errors()]
    shown = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    malformed = any(error.get("type") == "json_invalid" for error in exc.errors())
    return JSONResponse({"detail": f"invalid request: {shown}{more}", "errors": errors},
                        status_code=400 if malformed else 422)


def _error_item(error: dict[str, Any]) -> dict[str, str]:
    loc = [part for part in error.get("loc", ()) if part != "body"]
    if error.get("type") == "json_invalid":
        reason = error.get("ctx", {}).get("error", "").removesuffix(" at")  # "Unterminated string starting at"
        return {"location": "body", "message": f"not valid JSON ({reason} at character {loc[0] if loc else '?'})"}
    if not loc:
        return {"location": "body",
                "message": f"expected a JSON object like {_SHAPE}, sent with content-type: application/json"}
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return {"location": where, "message": error.get("msg", "invalid")}


def _log_config() -> dict[str, Any]:
    """uvicorn's logging set-up, each line stamped with the time, and bertnli's loggers writing through the
    same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    for formatter in config["formatters"].values():
        formatter["fmt"] = "%(asctime)s " + formatter["fmt"]
    config["loggers"]["bertnli"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def serve(
    model_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    max_pairs: int = 256,
    max_chars: int | None = None,
    precision: str = "auto",
    max_len: int | None = None,
    max_batch_pairs: int | None = None,
    max_wait_ms: float = 5,
) -> None:
    """Load the model at ``model_path`` (a run directory or a model folder) and serve it until Ctrl-C; ``max_len``
    as `NLIModel.load` takes it."""
    _check_address(host, port)
    model = NLIModel.load(model_path, device=device, precision=precision, max_len=max_len)
    name = _model_name(Path(model_path))
    app = create_app(model, max_pairs=max_pairs, max_chars=max_chars, max_batch_pairs=max_batch_pairs,
                     max_wait_ms=max_wait_ms, name=name)
    config = uvicorn.Config(app, host=host, port=port, log_config=_log_config())
    address = f"[{host}]" if ":" in host else host
    logger.info("serving %s (%s) at http://%s:%d — API docs at /docs", name, model.device, address, port)
    uvicorn.Server(config).run()


def _model_name(path: Path) -> str:
    """The run's name for a run directory or the model folder inside it; the folder's own name otherwise."""
    path = path.resolve()
    return path.parent.name if resolve_model_dir(path.parent) == path else path.name


def _check_address(host: str, port: int) -> None:
    """One clear line, before the model loads, when ``host:port`` cannot be listened on (in use, unknown)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself will
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
