"""Reading checkpoint files into plain Python / tensors, and writing model folders atomically.

Every failure to read (missing, truncated, not what it claims to be) becomes one `CheckpointError`
naming the file; no traceback from torch, safetensors or json reaches the user.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import load_file

from bertnli.errors import CheckpointError, some_of
from bertnli.paths import FILE_MODE, left_by_dead_process, owner, remove_dead_leftovers

StateDict = dict[str, torch.Tensor]


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (torch's can run to dozens of lines); for none, what it means."""
    lines = str(exc).strip().splitlines()
    if lines:
        return lines[0]
    return "the file is empty or cut off" if isinstance(exc, EOFError) else type(exc).__name__


def parse_json(data: bytes | str, source: str | Path) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise CheckpointError(source, f"not valid JSON: {reason(exc)}") from None


def read_json(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes(), path)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or reason(exc)}") from None


def read_json_object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(path, "expected a JSON object")
    return data


def _as_state_dict(data: object, source: str | Path) -> StateDict:
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise CheckpointError(source, "expected a state dict (names → tensors)")
    return dict(data)


def read_torch(file: Path | IO[bytes], source: str | Path) -> StateDict:
    """A state dict saved with `torch.save`, loaded safely (``weights_only``) onto the CPU."""
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(source, "file not found") from None
    except Exception as exc:  # torch raises many types (pickle, zip, EOF, runtime) for a bad file
        raise CheckpointError(source, f"cannot read: {reason(exc)}") from None
    return _as_state_dict(data, source)


def read_safetensors(path: Path) -> StateDict:
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...
        raise CheckpointError(path, f"cannot read: {reason(exc)}") from None


@contextmanager
def atomic_directory(directory: Path, replaceable: Callable[[Path], bool],
                     model_files: Collection[str] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it takes ``directory``'s place.

    An existing ``directory`` is replaced only if it is empty or ``replaceable(directory)`` says it holds a
    model of the same kind: a mistyped path is never deleted. Its other files (notes beside a model, a hub
    clone's .git) are never lost either: see `_settle_old_files` and `_retire`. On failure the temporary
    folder is removed and any existing ``directory`` is left as it was.
    """
    directory = Path(directory)
    clear_dead_swaps(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(directory, "is a file; name a folder")
    if directory.exists() and not (_holds_only_repository_files(directory) or replaceable(directory)):
        names = sorted(p.name for p in directory.iterdir())
        raise CheckpointError(directory, f"holds {some_of(names)}, not a model folder of this kind; refusing to "
                                         f"replace it (name a new folder)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{owner()}{uuid.uuid4().hex[:8]}"
    staging = directory.with_name(f".{directory.name}.tmp-{tag}")
    staging.mkdir()
    try:
        yield staging
        for file in staging.rglob("*"):  # some writers (safetensors) make owner-only files
            if file.is_file():
                os.chmod(file, FILE_MODE)
        _settle_old_files(directory, staging, model_files)
        _swap_in(staging, directory, directory.with_name(f".{directory.name}.old-{tag}"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def clear_dead_swaps(directory: Path, *, any_owner: bool = False) -> None:
    """What a process killed while replacing ``directory`` left beside it (``any_owner``: any process, for a
    caller that knows them all gone): its half-written folder goes; the old folder it had set aside comes
    back if the new one had not yet taken its place, and is retired (`_retire`) otherwise."""
    if not directory.parent.is_dir():
        return
    name = glob.escape(directory.name)
    for aside in directory.parent.glob(f".{name}.old-@*"):
        if left_by_dead_process(aside.name) or any_owner:
            if directory.exists():
                _retire(aside, directory)
            else:
                aside.rename(directory)
    remove_dead_leftovers(directory.parent, f".{name}.tmp-*", any_owner=any_owner)
    remove_dead_leftovers(directory.parent, f".{name}.del-*", any_owner=any_owner)


def _settle_old_files(directory: Path, staging: Path, model_files: Collection[str] | None) -> None:
    """What becomes of the files of ``directory`` that ``staging`` does not write again. Hidden entries (a hub
    clone's .git/ and .gitattributes, .DS_Store) stay, moved into the new folder once it is in place
    (`_retire`); a model card (README.md) is copied over. Of the others, without ``model_files`` (exports) any
    refuses the swap with a `CheckpointError`; with them (model folders, which training rewrites at every better
    epoch) those names go (parts of an older model that would mislead a reader), and every other file is copied
    over."""
    if not directory.exists():
        return
    others = [p.relative_to(directory) for p in directory.rglob("*") if not p.is_dir()
              and not p.relative_to(directory).parts[0].startswith(".")
              and not (staging / p.relative_to(directory)).exists()]
    strays = [path for path in others if not _repository_file(str(path))]
    if model_files is None and strays:
        raise CheckpointError(directory, f"holds {some_of(sorted(strays))}, which the new folder would not keep; "
                                         "move them out, or write elsewhere")
    for path in others:
        if len(path.parts) > 1 or path.name not in (model_files or ()):
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(directory / path, staging / path)


def _repository_file(name: str) -> bool:
    """An entry of a hub repository's own, which stays when a model is written into its clone: a hidden one
    (.git/, .gitattributes) or the model card (README.md)."""
    return name.startswith(".") or name == "README.md"


def _holds_only_repository_files(directory: Path) -> bool:
    """An empty folder, or a fresh clone of a hub repository: a model may be written into either."""
    return all(_repository_file(entry.name) for entry in directory.iterdir())


def _swap_in(staging: Path, directory: Path, aside: Path) -> None:
    """Rename ``staging`` to ``directory``; an existing one is set aside first, and retired last."""
    if not directory.exists():
        staging.rename(directory)
        return
    directory.rename(aside)
    try:
        staging.rename(directory)
    except BaseException:
        aside.rename(directory)
        raise
    _retire(aside, directory)


def _retire(aside: Path, directory: Path) -> None:
    """The old folder set aside, once ``directory`` has taken its place: its hidden entries move into
    ``directory`` (unless it has its own), then it is renamed ``.del-`` (never brought back) and deleted.
    A move that fails leaves it whole, for the next writer to try again."""
    for entry in aside.iterdir():
        if entry.name.startswith(".") and not (directory / entry.name).exists():
            entry.rename(directory / entry.name)
    doomed = aside.with_name(aside.name.replace(".old-", ".del-", 1))
    aside.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
