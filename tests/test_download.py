"""Downloads against a real HTTP server on 127.0.0.1: progress, checksums, caching, errors, then reading.

Nothing here reaches the internet: every URL is overridden, and connections elsewhere are refused
(see conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import zipfile
from io import BytesIO

import pytest
from synthetic import dead_owner

from bertnli import paths
from bertnli.data import Example, cached_path, dataset_splits, download, read_dataset
from bertnli.data.download import DATASETS
from bertnli.errors import BertnliWarning, DataError, DownloadError
from bertnli.paths import owner, remove_dead_leftovers

ROWS = {
    "train": [("entailment", "A dog runs.", "An animal moves."), ("-", "A cat.", "A pet.")],
    "dev": [("neutral", "A man sings.", "A man sings well."), ("contradiction", "It rains.", "It is dry.")],
    "test": [("entailment", "Kids play.", "Children play.")],
}


def snli_zip() -> bytes:
    """snli_1.0.zip in the official layout, a few rows in each split."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for split, rows in ROWS.items():
            lines = [
                json.dumps({"gold_label": g, "sentence1": p, "sentence2": h, "pairID": f"{split}{i}"})
                for i, (g, p, h) in enumerate(rows)
            ]
            z.writestr(f"snli_1.0/snli_1.0_{split}.jsonl", "\n".join(lines) + "\n")
            z.writestr(f"__MACOSX/snli_1.0/._snli_1.0_{split}.jsonl", b"\x00\x05")
    return buffer.getvalue()


@pytest.fixture
def server(http_server):
    http_server.files["/snli_1.0.zip"] = snli_zip()
    return http_server


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/snli_1.0.zip"


def test_download_verifies_caches_and_reuses(server, tmp_path, capsys):
    body = server.files["/snli_1.0.zip"]
    path = download("snli", tmp_path, url=server.url + "/snli_1.0.zip", md5=md5(body))
    assert path == tmp_path / "snli_1.0.zip" and path.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snli_1.0.zip", "snli_1.0.zip.sha256"]
    assert (tmp_path / "snli_1.0.zip.sha256").read_text().split()[0] == hashlib.sha256(body).hexdigest()
    assert "snli_1.0.zip" in capsys.readouterr().err  # the progress bar
    assert server.requests == ["/snli_1.0.zip"]
    again = download("snli", tmp_path, url=closed_port_url(), md5=md5(body), progress=False)
    assert again == path and server.requests == ["/snli_1.0.zip"]
    assert cached_path("snli", tmp_path) == path


def test_processes_fetching_the_same_file_at_once_download_it_once(server, tmp_path):
    """As torchrun's ranks do: they take turns, the first downloads, and the others find the file in place."""
    from concurrent.futures import ThreadPoolExecutor

    body = server.files["/snli_1.0.zip"]
    server.delay["/snli_1.0.zip"] = 0.3  # every fetch is under way before any finishes
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: download("snli", tmp_path, url=server.url + "/snli_1.0.zip", md5=md5(body),
                                                 progress=False), range(4)))
    assert paths == [tmp_path / "snli_1.0.zip"] * 4 and len(server.requests) == 1
    assert (tmp_path / "snli_1.0.zip").read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snli_1.0.zip", "snli_1.0.zip.sha256"]


def test_a_damaged_cached_file_is_set_aside_and_fetched_again(server, tmp_path):
    body = server.files["/snli_1.0.zip"]
    path = download("snli", tmp_path, url=server.url + "/snli_1.0.zip", md5=md5(body), progress=False)
    path.write_bytes(body[:100])
    with pytest.warns(BertnliWarning, match="its published md5 checksum: set aside as snli_1.0.zip.rejected,"):
        download("snli", tmp_path, url=server.url + "/snli_1.0.zip", md5=md5(body), progress=False)
    assert path.read_bytes() == body and len(server.requests) == 2
    assert (tmp_path / "snli_1.0.zip.rejected").read_bytes() == body[:100]
    path.write_bytes(body[:50])  # a second bad copy does not take the first one's place
    with pytest.warns(BertnliWarning, match="set aside as snli_1.0.zip.rejected.2,"):
        download("snli", tmp_path, url=server.url + "/snli_1.0.zip", md5=md5(body), progress=False)
    assert (tmp_path / "snli_1.0.zip.rejected").read_bytes() == body[:100]
    assert (tmp_path / "snli_1.0.zip.rejected.2").read_bytes() == body[:50]


def test_without_published_checksum_the_cached_copy_is_used_as_it_is_and_recorded(server, tmp_path):
    server.files["/multinli_1.0.zip"] = b"mnli archive bytes"
    url = server.url + "/multinli_1.0.zip"
    path = download("mnli", tmp_path, url=url, progress=False)
    sidecar = tmp_path / "multinli_1.0.zip.sha256"
    assert sidecar.read_text() == f"{hashlib.sha256(b'mnli archive bytes').hexdigest()}  multinli_1.0.zip\n"
    download("mnli", tmp_path, url=url, progress=False)
    assert len(server.requests) == 1
    # Without a published checksum, a copy put over the cached one is the user's: used as it is, and recorded,
    # whatever its time (cp -p and rsync keep an older one).
    path.write_bytes(b"my own copy, put over the cached one")
    os.utime(path, (0, 0))
    with pytest.warns(BertnliWarning, match="is not the copy fetched earlier .*: using it as it is"):
        assert download("mnli", tmp_path, url=url, progress=False).read_bytes() == \
            b"my own copy, put over the cached one"
    assert sidecar.read_text().split()[0] == hashlib.sha256(b"my own copy, put over the cached one").hexdigest()
    assert len(server.requests) == 1
    sidecar.write_text("")  # a record left empty by a full disk: as if there were none
    assert download("mnli", tmp_path, url=url, progress=False) == path and len(server.requests) == 1


def test_without_file_locks_processes_fetching_at_once_each_get_the_whole_file(server, tmp_path, monkeypatch):
    """Windows has no `fcntl`: each process then downloads a copy of its own, and the one left is whole."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as on Windows
    body = server.files["/snli_1.0.zip"]
    server.delay["/snli_1.0.zip"] = 0.3
    with ThreadPoolExecutor(3) as pool:
        paths_ = list(pool.map(lambda _: download("snli", tmp_path, url=server.url + "/snli_1.0.zip",
                                                  md5=md5(body), progress=False), range(3)))
    assert paths_ == [tmp_path / "snli_1.0.zip"] * 3 and len(server.requests) == 3
    assert (tmp_path / "snli_1.0.zip").read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snli_1.0.zip", "snli_1.0.zip.sha256"]


def test_every_module_imports_without_fcntl():
    code = ("import sys, pkgutil, importlib, bertnli; sys.modules['fcntl'] = None\n"
            "for m in pkgutil.walk_packages(bertnli.__path__, 'bertnli.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_where_processes_cannot_be_asked_about_leftovers_stay(tmp_path, monkeypatch):
    """On Windows, `os.kill(pid, 0)` would send Ctrl-C rather than ask whether the process runs."""
    dead = tmp_path / f"multinli_1.0.zip.{dead_owner()}.x1.part"
    dead.write_bytes(b"half")
    monkeypatch.setattr(paths, "_CAN_PROBE_PROCESSES", False)
    monkeypatch.setattr(os, "kill", lambda *_: pytest.fail("os.kill called"))
    assert remove_dead_leftovers(tmp_path, "*.part") == [] and dead.exists()


def test_downloads_of_processes_that_died_are_cleared(server, tmp_path):
    dead_part = tmp_path / f"multinli_1.0.zip.{dead_owner()}.x1.part"
    live_part = tmp_path / f"multinli_1.0.zip.{owner()}.x2.part"
    dead_part.write_bytes(b"half")
    live_part.write_bytes(b"half")
    server.files["/multinli_1.0.zip"] = b"mnli archive bytes"
    download("mnli", tmp_path, url=server.url + "/multinli_1.0.zip", progress=False)
    assert not dead_part.exists() and live_part.exists()


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=r"checksum mismatch.*expected md5 0{32}.*removed"):
        download("snli", tmp_path, url=server.url + "/snli_1.0.zip", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_one_clear_line(server, tmp_path):
    with pytest.raises(DownloadError) as caught:
        download("snli", tmp_path, url=server.url + "/missing.zip", progress=False)
    message = str(caught.value)
    assert "HTTP 404" in message and "pass local files instead, such as path/to/snli_1.0_train.jsonl" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path):
    with pytest.raises(DownloadError, match=r"could not reach http://127.0.0.1:.*pass local files instead"):
        download("snli", tmp_path, url=closed_port_url(), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_address_without_its_scheme_is_one_clear_line(tmp_path):
    with pytest.raises(DownloadError, match=r"could not reach example\.org/snli_1\.0\.zip \(unknown url type"):
        download("snli", tmp_path, url="example.org/snli_1.0.zip", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_is_refused(server, tmp_path):
    server.files["/RTE.zip"] = b"short"
    server.claimed_length["/RTE.zip"] = 1000
    with pytest.raises(DownloadError, match="stopped at 5 of 1,000 bytes"):
        download("rte", tmp_path, url=server.url + "/RTE.zip", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_dataset(tmp_path):
    with pytest.raises(DownloadError, match="unknown dataset 'imdb'; known: snli, mnli, rte, sick"):
        download("imdb", tmp_path)


def test_reading_the_download(server, tmp_path, monkeypatch):
    monkeypatch.setenv("BERTNLI_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="snli is not downloaded: run `bertnli data download snli`"):
        read_dataset("snli", split="train")
    body = server.files["/snli_1.0.zip"]
    path = download("snli", url=server.url + "/snli_1.0.zip", md5=md5(body), progress=False)
    assert path == tmp_path / "data" / "snli_1.0.zip"
    dev = read_dataset(path, split="dev")
    assert dev.examples == [Example(p, h, g) for g, p, h in ROWS["dev"]]
    train = read_dataset("snli", split="train")
    assert train.examples == [Example("A dog runs.", "An animal moves.", "entailment")]
    assert dict(train.skipped) == {"no gold label (-)": 1}
    assert read_dataset("snli:test").examples == [Example("Kids play.", "Children play.", "entailment")]


def test_registry_splits_are_where_the_reader_looks(tmp_path):
    """For each dataset, an archive laid out as the registry says reads each split from its member."""
    assert dataset_splits("snli") == {s: f"snli_1.0/snli_1.0_{s}.jsonl" for s in ("train", "dev", "test")}
    sick_header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\tSemEval_set"
    for name, entry in DATASETS.items():
        archive = tmp_path / entry.filename
        files = {"README.txt": "-"}
        for split, member in entry.splits.items():
            if member.endswith(".jsonl"):
                files[member] = json.dumps({"gold_label": "neutral", "sentence1": split, "sentence2": member})
            elif name == "rte":
                files[member] = f"index\tsentence1\tsentence2\tlabel\n0\t{split}\t{member}\tentailment\n"
            else:
                parts = [f"{i}\t{s}\t{member}\tNEUTRAL\t{s.upper()}" for i, s in enumerate(entry.splits)]
                files[member] = "\r\n".join([sick_header, *parts])
        with zipfile.ZipFile(archive, "w") as z:
            for member, text in files.items():
                z.writestr(member, text)
        for split, member in entry.splits.items():
            (example,) = read_dataset(archive, split=split).examples
            assert (example.premise, example.hypothesis) == (split, member), name
        assert entry.validation in entry.splits and entry.validation != "train", name


def test_a_file_put_in_the_cache_by_hand_is_used_and_recorded(tmp_path):
    (tmp_path / "RTE.zip").write_bytes(b"my copy")
    assert download("rte", tmp_path, url=closed_port_url(), progress=False) == tmp_path / "RTE.zip"
    assert (tmp_path / "RTE.zip.sha256").read_text().split()[0] == hashlib.sha256(b"my copy").hexdigest()
