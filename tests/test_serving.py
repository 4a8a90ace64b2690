"""The HTTP service: answers equal `NLIModel.predict`, limits and bad requests are 4xx, requests are batched."""

from __future__ import annotations

import asyncio
import logging
import random
import threading

import numpy as np
import pytest
import torch

import bertnli
from bertnli.inference import NLIModel
from bertnli.model import BERTClassifier, BertConfig
from bertnli.text import WordTokenizer

pytest.importorskip("fastapi", reason="fastapi is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from bertnli.serving import Batcher, create_app  # noqa: E402
from bertnli.serving.batcher import ModelFailed, ServiceClosed, model_thread_running  # noqa: E402

LABELS = ["entailment", "neutral", "contradiction"]
WORDS = [
    "a", "the", "man", "woman", "dog", "cat", "runs", "sleeps", "plays", "guitar", "music", "park", "outside",
    "inside", "is", "on", "in",
]
PAIRS = [
    ("A man plays the guitar", "a man plays music"),
    ("the dog sleeps inside", "A dog runs in the park"),
    ("A woman is outside", "unknown words here"),
]


@pytest.fixture(scope="module")
def model() -> NLIModel:
    torch.manual_seed(0)
    tokenizer = WordTokenizer(["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", *WORDS])
    cfg = BertConfig(tokenizer.vocab_size, hidden_size=16, num_layers=1, num_heads=2, ffn_size=32, max_position=64)
    return NLIModel(BERTClassifier(cfg, len(LABELS)), tokenizer, LABELS, max_len=32, device="cpu")


@pytest.fixture
def client(model):
    with TestClient(create_app(model, max_pairs=4, max_chars=50, name="tiny")) as client:
        yield client


def body(pairs) -> dict:
    return {"pairs": [{"premise": p, "hypothesis": h} for p, h in pairs]}


def test_predictions_equal_nlimodel_predict_and_say_which_pairs_were_cut(client, model):
    long = " ".join(["a"] * 20)  # 20 tokens: with 20 more, over the model's 32; with 2, within
    pairs = [PAIRS[0], (long, long), (long, "a dog")]
    response = client.post("/predict", json=body(pairs))
    assert response.status_code == 200
    data = response.json()
    assert data["model"] == "tiny"
    for got, expected in zip(data["predictions"], model.predict(pairs), strict=True):
        assert got["label"] == expected.label
        assert got["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
        assert got["truncated"] is expected.truncated
    assert [p["truncated"] for p in data["predictions"]] == [False, True, False]
    assert [p["id"] for p in data["predictions"]] == [None] * 3


def test_a_pair_may_carry_an_id_that_comes_back_with_its_prediction(client):
    pairs = [{"premise": "a dog runs", "hypothesis": "a dog", "id": "claim-17"},
             {"premise": "a cat sleeps", "hypothesis": "a dog"}, {"premise": "a man", "hypothesis": "a", "id": 3}]
    response = client.post("/predict", json={"pairs": pairs})
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["predictions"]] == ["claim-17", None, 3]


def test_pairs_may_name_their_texts_as_snli_files_do(client):
    named = client.post("/predict", json={"pairs": [{"premise": "a dog runs", "hypothesis": "a dog"}]}).json()
    snli = client.post("/predict", json={"pairs": [{"sentence1": "a dog runs", "sentence2": "a dog"}]})
    assert snli.status_code == 200 and snli.json() == named


def test_health_model_info_and_docs(client, model):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["labels"] == LABELS and info["max_len"] == 32 and info["name"] == "tiny"
    assert info["config"] == model.network.config.to_dict()
    assert info["parameters"] == sum(p.numel() for p in model.network.parameters())
    assert info["limits"]["max_pairs"] == 4 and info["limits"]["max_chars"] == 50
    assert (info["precision"], info["version"]) == ("fp32", bertnli.__version__)
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(schema["paths"])
    assert "examples" in schema["components"]["schemas"]["PredictRequest"]
    assert schema["components"]["schemas"]["PredictRequest"]["properties"]["pairs"]["maxItems"] == 4  # the limits
    assert {schema["components"]["schemas"]["Pair"]["properties"][text]["maxLength"]
            for text in ("premise", "hypothesis")} == {50}
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("a", "b")] * 5, "5 pairs in one request; the limit is 4"),
        ([("a", "b"), ("x" * 51, "b")], "pairs[1].premise has 51 characters; the limit is 50"),
        ([("a", "y" * 60)], "pairs[0].hypothesis has 60 characters; the limit is 50"),
    ],
)
def test_limits_give_413_with_the_reason(client, pairs, message):
    response = client.post("/predict", json=body(pairs))
    assert response.status_code == 413
    assert response.json() == {"detail": message}


def test_a_body_too_big_for_the_limits_is_413_before_it_is_read(client):
    """4 pairs of 50 characters at most: a body beyond what they can take is refused by its Content-Length, or
    while it streams in; the largest body within the limits (every character an escaped emoji) is answered."""
    from bertnli.serving.app import max_body_bytes

    limit = max_body_bytes(4, 50)
    refused = {"detail": f"the request body is over {limit:,} bytes, more than the server's limits allow"}
    padded = b'{"pairs": [' + b" " * limit + b"]}"
    headers = {"content-type": "application/json"}
    response = client.post("/predict", content=padded, headers=headers)
    assert (response.status_code, response.json()) == (413, refused)
    response = client.post("/predict", content=(b" " * 1000 for _ in range(limit // 1000 + 2)), headers=headers)
    assert (response.status_code, response.json()) == (413, refused)
    emoji = "\\ud83d\\ude00" * 50  # JSON's escape of one astral character: 12 bytes
    largest = ('{"pairs": [' + ", ".join([f'{{"premise": "{emoji}", "hypothesis": "{emoji}"}}'] * 4) + "]}").encode()
    assert len(largest) <= limit
    assert client.post("/predict", content=largest, headers=headers).status_code == 200


def test_serve_takes_the_batching_settings_from_the_command_line(monkeypatch):
    from bertnli import serving
    from bertnli.cli import main

    given = {}
    monkeypatch.setattr(serving, "serve", lambda *args, **kwargs: given.update(kwargs))
    assert main(["serve", "--model", "runs/x", "--max-batch-pairs", "64", "--max-wait-ms", "0.5"]) == 0
    assert (given["max_batch_pairs"], given["max_wait_ms"], given["max_len"]) == (64, 0.5, None)
    assert main(["serve", "--model", "runs/x", "--max-len", "48", "--max-chars", "900"]) == 0
    assert (given["max_len"], given["max_chars"]) == (48, 900)


def test_texts_may_by_default_be_as_long_as_the_model_reads_and_a_two_class_model_says_what_it_answers(model):
    """A text the length of what a 512-token model reads (about 2,300 characters of English) must not be
    refused by a limit set for 128 tokens."""
    from bertnli.serving.app import CHARS_PER_TOKEN

    two_class = NLIModel(BERTClassifier(model.network.config, 2), model.tokenizer, ["entailment", "not_entailment"],
                         max_len=64, device="cpu")
    for served in (model, two_class):
        with TestClient(create_app(served)) as client:
            limit = client.get("/model").json()["limits"]["max_chars"]
            assert limit == CHARS_PER_TOKEN * served.max_len
            long = " ".join(["a"] * (limit // 2))
            assert client.post("/predict", json=body([(long, "a dog")])).status_code == 200
            description = client.get("/openapi.json").json()["info"]["description"]
            assert ("contradict it, or neither?" in description) == (served is model)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", 'body: expected a JSON object like {"pairs"'),
        (b"[1, 2]", 'body: expected a JSON object like {"pairs"'),
        (b'{"pairs": []}', "pairs: List should have at least 1 item"),
        (b'{"pair": []}', "pairs: Field required"),
        (b'{"pairs": [{"premise": "a"}]}', "pairs[0].hypothesis: Field required"),
        (b'{"pairs": [{"premise": 3, "hypothesis": "b"}]}', "pairs[0].premise: Input should be a valid string"),
        (b'{"pairs": "a dog"}', "pairs: Input should be a valid list"),
        (b'{"pairs": [{"premise": "a", "hypothesis": "b", "label": 1}]}', "pairs[0].label: Extra inputs"),
        (b'{"pairs": [{"premise": "a", "hypothesis": "b"}, {"premise": "a", "hypothesis": " "}]}',
         "pairs[1].hypothesis: Value error, must not be empty or blank"),
        (b'{"pairs": [{"premise": "\\u200b\\u0000", "hypothesis": "b"}]}',
         "pairs[0].premise: Value error, must not be empty or blank"),
        (b'{"pairs": [{"premise": "a \\ud83d dog", "hypothesis": "b"}]}',
         "pairs[0].premise: Value error, holds the escape \\ud83d, half of a surrogate pair"),
        (b'{"pairs": [{"premise": "a", "hypothesis": "b", "id": true}]}',
         "pairs[0].id: Value error, is true, not a string or an integer"),
        (b'{"pairs": [{"premise": "a", "hypothesis": "b", "id": 1.5}]}',
         "pairs[0].id: Value error, is 1.5, not a string or an integer"),
    ],
)
def test_requests_of_the_wrong_shape_give_422_with_a_readable_message(client, content, message):
    response = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("invalid request: ") and message in detail, detail


def test_a_body_that_is_not_json_utf8_or_is_compressed_is_a_400_that_says_so(client):
    import gzip

    for content, headers, told in (
            (b'{"pairs": [', {}, "not valid JSON (Expecting value at character 11)"),
            (b'{"pairs": [{"premise": "a', {}, "not valid JSON (Unterminated string starting at character 23)"),
            ('{"pairs": [{"premise": "café", "hypothesis": "b"}]}'.encode("latin-1"), {},
             "not UTF-8 text; send JSON encoded in UTF-8"),
            (gzip.compress(b'{"pairs": []}'), {"content-encoding": "gzip"},
             "sent with content-encoding: gzip, which is not read; send it uncompressed"),
            (b'{"pairs": [{"premise": "a", "hypothesis": "b", "id": ' + b"1" * 5000 + b"}]}", {},
             "not JSON this server can read (Exceeds the limit (4300 digits) for integer string conversion: "
             "value has 5000 digits)")):
        response = client.post("/predict", content=content, headers={"content-type": "application/json", **headers})
        assert response.status_code == 400
        assert response.json()["detail"] == f"invalid request: body: {told}"
    assert client.get("/nowhere").json() == {"detail": "Not Found"}  # other errors as FastAPI tells them


def test_a_model_failure_is_a_generic_500_and_is_logged(model, monkeypatch, caplog):
    def broken(pairs):
        raise RuntimeError("CUDA exploded at 0xdeadbeef")

    monkeypatch.setattr(model, "predict", broken)
    with TestClient(create_app(model)) as client, caplog.at_level(logging.ERROR, "bertnli.serving"):
        response = client.post("/predict", json=body(PAIRS[:1]))
    assert response.status_code == 500
    assert "server log" in response.json()["detail"] and "deadbeef" not in response.text
    assert "CUDA exploded" in caplog.text


def test_concurrent_requests_share_model_calls(model, monkeypatch):
    calls = []
    predict = model.predict
    expected = {pair: p for pair, p in zip(PAIRS, predict(PAIRS))}

    def counting(pairs):
        pairs = list(pairs)
        calls.append(len(pairs))
        return predict(pairs)

    monkeypatch.setattr(model, "predict", counting)
    rng = random.Random(0)
    requests = [[rng.choice(PAIRS) for _ in range(rng.randint(1, 4))] for _ in range(200)]
    app = create_app(model, max_batch_pairs=64, max_wait_ms=20)

    async def run_all() -> list:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*(c.post("/predict", json=body(pairs)) for pairs in requests))

    responses = asyncio.run(run_all())
    assert [r.status_code for r in responses] == [200] * len(requests)
    assert len(calls) < len(requests) / 4 and max(calls) <= 64 and sum(calls) == sum(map(len, requests))
    for pairs, response in zip(requests, responses):
        assert [p["label"] for p in response.json()["predictions"]] == [expected[pair].label for pair in pairs]


def fake_predict(premises, hypotheses) -> np.ndarray:
    """One row per pair: the length of its premise. A premise "boom" fails the call."""
    if "boom" in premises:
        raise ValueError("boom")
    return np.array([[len(p)] for p in premises], dtype=np.float32)


def test_batcher_splits_rows_back_and_isolates_a_failing_request():
    call_sizes = []

    def recording_predict(premises, hypotheses):
        call_sizes.append(len(premises))
        return fake_predict(premises, hypotheses)

    async def scenario():
        batcher = Batcher(recording_predict, max_batch_pairs=5, max_wait_ms=50)
        batcher.start()
        jobs = [(["aa", "b"], ["x", "y"]), (["boom"], ["x"]), (["cccc"], ["x"]), (["d"] * 3, ["x"] * 3)]
        results = await asyncio.gather(*(batcher.submit(p, h) for p, h in jobs), return_exceptions=True)
        await batcher.close()
        return batcher, results

    batcher, results = asyncio.run(scenario())
    assert [r[:, 0].tolist() for r in (results[0], results[2], results[3])] == [[2, 1], [4], [1, 1, 1]]
    assert isinstance(results[1], ModelFailed)
    # The first three requests (4 pairs) in one call, which fails; each of them again alone; then the last.
    assert call_sizes == [4, 2, 1, 1, 3] and batcher.calls == len(call_sizes)


def test_batcher_finishes_pending_work_on_close_then_refuses_new_work():
    async def scenario():
        batcher = Batcher(fake_predict, max_batch_pairs=2, max_wait_ms=1000)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([f"{i}"], ["h"])) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.close()
        with pytest.raises(ServiceClosed):
            await batcher.submit(["late"], ["h"])
        return [await job for job in pending]

    assert [int(r[0, 0]) for r in asyncio.run(scenario())] == [1] * 5


def test_a_forced_quit_answers_503_at_once_without_waiting_for_the_model_call():
    """abort (the lifespan's answer to a second Ctrl-C) fails every request in flight and returns while a slow
    model call still runs in its thread."""
    release = threading.Event()

    def slow_predict(premises, hypotheses):
        release.wait(10)
        return fake_predict(premises, hypotheses)

    async def scenario():
        batcher = Batcher(slow_predict, max_batch_pairs=1, max_wait_ms=0)
        batcher.start()
        requests = [asyncio.ensure_future(batcher.submit([f"{i}"], ["h"])) for i in range(3)]
        await asyncio.sleep(0.2)  # the first request is in the model, the others wait
        batcher.abort()
        outcomes = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 5)
        return outcomes, model_thread_running()

    outcomes, still_running = asyncio.run(scenario())
    release.set()
    assert [type(o) for o in outcomes] == [ServiceClosed] * 3 and still_running


def test_an_address_in_use_is_one_clear_line_before_the_model_loads(tmp_path):
    import socket

    from bertnli.errors import ConfigError
    from bertnli.serving import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The model path does not exist: the address is checked first.
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            serve(tmp_path / "no-model", port=port)


def test_a_run_and_its_model_folder_are_served_under_the_run_name(model, tmp_path):
    from bertnli.serving.app import _model_name
    from bertnli.weights import save_classifier

    run = tmp_path / "snli-dev"
    save_classifier(run / "model", model.network, model.tokenizer, model.labels, model.max_len)
    (tmp_path / "notes" / "model").mkdir(parents=True)
    assert _model_name(run) == _model_name(run / "model") == "snli-dev"
    assert _model_name(tmp_path / "notes" / "model") == "model"  # a folder called model, holding no model
