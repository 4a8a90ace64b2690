"""The HTTP service: `create_app(model)` for a FastAPI app, `serve(model_path, ...)` to run one."""

from bertnli.errors import ConfigError

try:
    from bertnli.serving.app import create_app, serve
except ImportError as exc:
    if exc.name not in {"fastapi", "starlette", "pydantic", "uvicorn"}:
        raise
    raise ConfigError(f"serving needs {exc.name}: pip install 'bertnli[serve]'") from exc
from bertnli.serving.batcher import Batcher

__all__ = ["Batcher", "create_app", "serve"]
