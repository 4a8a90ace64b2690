"""Load test of the HTTP service: many concurrent clients, each sending its next request when answered.

    python benchmarks/serve_load.py                                  # in-process server, untrained MiniLM
    python benchmarks/serve_load.py --model runs/dev --requests 2000 --concurrency 200
    python benchmarks/serve_load.py --url http://127.0.0.1:8000      # a running `bertnli serve`

Requests carry 1–8 pairs drawn from SNLI dev (synthetic sentences if the file is absent). Loopback only.
Prints requests, errors, pairs/s, requests/s and latency percentiles; exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import torch

from bertnli.data import NLI_LABELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SOURCES

SNLI_DEV = SOURCES[0]
LABELS = list(NLI_LABELS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server on 127.0.0.1 (default: start one in this process)")
    p.add_argument("--model", help="model folder or run directory (default: an untrained MiniLM classifier)")
    p.add_argument("--device", default="auto")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--pairs", type=int, nargs=2, default=(1, 8), metavar=("MIN", "MAX"), help="pairs a request")
    p.add_argument("--data", type=Path, default=SNLI_DEV, help="SNLI-style jsonl to draw pairs from")
    p.add_argument("--max-batch-pairs", type=int, help="in-process server only (default: bertnli serve's)")
    p.add_argument("--max-wait-ms", type=float, default=5, help="in-process server only")
    p.add_argument("--request-timeout", type=float, default=120, help="seconds for one request")
    p.add_argument("--time-limit", type=float, default=600, help="seconds for the whole run")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# ---- workload -------------------------------------------------------------------------------------
def load_pairs(path: Path) -> list[tuple[str, str]]:
    """Premise–hypothesis pairs from an SNLI jsonl file, or synthetic ones if it is missing."""
    if not path.is_file():
        print(f"note: {path} not found; using synthetic sentences", file=sys.stderr)
        rng = random.Random(0)
        words = ["a", "man", "woman", "dog", "child", "plays", "runs", "sits", "on", "the", "in", "park", "ball"]
        return [(" ".join(rng.choices(words, k=12)), " ".join(rng.choices(words, k=7))) for _ in range(5000)]
    with path.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["sentence1"], row["sentence2"]) for row in rows]


def make_requests(pairs: list[tuple[str, str]], count: int, low: int, high: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"pairs": [{"premise": p, "hypothesis": h} for p, h in rng.sample(pairs, rng.randint(low, high))]}
        for _ in range(count)
    ]


# ---- server ---------------------------------------------------------------------------------------
def default_model(device: str):
    """A fresh classifier on the offline MiniLM: untrained head, real encoder cost."""
    from bertnli.inference import NLIModel
    from bertnli.model import BERTClassifier
    from bertnli.weights import load_pretrained

    torch.manual_seed(0)
    pre = load_pretrained("minilm")
    return NLIModel(BERTClassifier.from_pretrained(pre.model, len(LABELS)), pre.tokenizer, LABELS, 128, device)


@contextmanager
def local_server(args: argparse.Namespace) -> Iterator[tuple[str, Any, Any]]:
    """Serve the model with uvicorn in a thread on 127.0.0.1 (a free port); yield (url, app, model)."""
    import uvicorn

    from bertnli.inference import NLIModel
    from bertnli.serving import create_app

    model = NLIModel.load(args.model, device=args.device) if args.model else default_model(args.device)
    app = create_app(
        model, max_pairs=max(256, args.pairs[1]), max_batch_pairs=args.max_batch_pairs, max_wait_ms=args.max_wait_ms
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app, model
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def check_loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing {url}: this benchmark talks to loopback addresses (127.0.0.1) only")
    return url.rstrip("/")


# ---- clients --------------------------------------------------------------------------------------
@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    pairs: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def run_load(url: str, requests: list[dict], args: argparse.Namespace) -> Results:
    """``args.concurrency`` clients share the requests; each sends its next one when answered."""
    results, todo = Results(), iter(requests)
    # Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s) could race a request.
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency, keepalive_expiry=2
    )
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.request_timeout) as client:
        (await client.post("/predict", json=requests[0])).raise_for_status()  # warm-up, not timed

        async def worker() -> None:
            for body in todo:
                start = time.perf_counter()
                try:
                    response = await client.post("/predict", json=body)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    results.errors.append(f"{type(exc).__name__}: {exc!r}")
                    continue
                results.latencies.append(time.perf_counter() - start)
                results.pairs += len(body["pairs"])

        start = time.perf_counter()
        workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
        _, pending = await asyncio.wait(workers, timeout=args.time_limit)
        for task in pending:
            task.cancel()
        results.seconds = time.perf_counter() - start
    unanswered = len(requests) - len(results.latencies) - len(results.errors)
    results.errors += [f"not answered within --time-limit {args.time_limit:g}s"] * unanswered
    return results


def direct_rate(model, requests: list[dict], limit: int = 512) -> float:
    """Pairs/s of one `predict_proba` call on (up to ``limit`` of) the same pairs, without HTTP."""
    pairs = [(p["premise"], p["hypothesis"]) for body in requests for p in body["pairs"]][:limit]
    start = time.perf_counter()
    model.predict_proba(*zip(*pairs))
    return len(pairs) / (time.perf_counter() - start)


def report(results: Results, args: argparse.Namespace, server: list[tuple[str, str]]) -> None:
    ms = np.percentile(np.array(results.latencies) * 1000, [50, 90, 99]) if results.latencies else [np.nan] * 3
    answered = len(results.latencies)
    rows = [
        *server,
        ("requests", f"{answered + len(results.errors)} ({args.concurrency} concurrent clients)"),
        ("errors", f"{len(results.errors)}"),
        ("pairs", f"{results.pairs}"),
        ("seconds", f"{results.seconds:.1f}"),
        ("pairs/s", f"{results.pairs / results.seconds:.1f}"),
        ("requests/s", f"{answered / results.seconds:.1f}"),
        ("latency p50/p90/p99", " / ".join(f"{x:.0f}" for x in ms) + " ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for error in sorted(set(results.errors))[:5]:
        print(f"error: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    requests = make_requests(load_pairs(args.data), args.requests, *args.pairs, args.seed)
    if args.url:
        results = asyncio.run(run_load(check_loopback(args.url), requests, args))
        server = [("server", args.url)]
    else:
        with local_server(args) as (url, app, model):
            batcher = app.state.batcher
            before = batcher.calls
            results = asyncio.run(run_load(url, requests, args))
            calls = batcher.calls - before - 1  # less the warm-up request
            server = [
                ("server", f"in-process uvicorn, {model.device}, {torch.get_num_threads()} torch threads, "
                 f"{os.cpu_count()} CPUs"),
                ("model calls", f"{calls} (mean {results.pairs / max(calls, 1):.0f} pairs a call)"),
                ("model alone", f"{direct_rate(model, requests):.1f} pairs/s (one predict_proba call, no HTTP)"),
            ]
    report(results, args, server)
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
