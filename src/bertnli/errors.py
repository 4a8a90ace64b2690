"""Typed errors: library code raises these, and the CLI turns each into one clear line. SIGTERM can be raised
as one too (`termination_as_interrupt`), where work in progress is to be kept rather than lost."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path


def some_of(names: Sequence[object], shown: int = 3) -> str:
    """The first ``shown`` of ``names``, for a message, and how many more."""
    more = len(names) - shown
    return ", ".join(map(str, names[:shown])) + (f" and {more} more" if more > 0 else "")


class BertnliError(Exception):
    """Base class of every error bertnli raises on purpose."""


class BertnliWarning(UserWarning):
    """Something works, but probably not as meant (fp16 on a CPU, a label missing from the training data).
    The command line prints each as one line."""


class DataError(BertnliError):
    """A data file is missing or malformed. Names the file and, where known, the line."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class NoPairs(DataError):
    """A data source holds no pairs: an empty file, or one whose every row was skipped. An error for training
    and evaluation; prediction writes an empty output (a batch of a pipeline may come empty)."""


class CheckpointError(BertnliError):
    """A checkpoint is missing, corrupt, or does not fit the model. Names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class DownloadError(BertnliError):
    """A download failed or its checksum did not match."""


class ConfigError(BertnliError):
    """An option or combination of options cannot work."""


class TrainingDiverged(BertnliError):
    """The training loss stopped being a finite number: the weights overflowed and are of no more use."""


class ProcessLost(BertnliError):
    """Another process of a data-parallel run stopped (it crashed, or was killed), so this one cannot go on.
    Says how to resume from the run's last checkpoint."""

    def __init__(self, run_dir: str | Path, reason: str, processes: int, command_line: bool, saved: bool) -> None:
        self.run_dir = Path(run_dir)
        how = resume_command(run_dir, command_line, processes)
        then = (f"resume from its last checkpoint with `{how}`" if saved else
                f"it saved no checkpoint yet: `{how}` starts it again from its first step")
        super().__init__(f"another process of this run stopped, so this one cannot go on ({reason}); that "
                         f"process's own output says why; {then}")


def resume_command(run_dir: str | Path, command_line: bool, processes: int) -> str:
    """How to go on with a stopped run: from the command line (under torchrun, as it ran), or from Python."""
    if not command_line:
        return f"train(cfg, train_set, eval_set, {str(run_dir)!r}, resume=True)"
    how = f"bertnli train --resume {run_dir}"
    return f"torchrun --nproc-per-node {processes} -m {how}" if processes > 1 else how


#: The signals on which work stops and keeps what it has done: Ctrl-C, SIGTERM (a scheduler's notice, `kill`)
#: and, where there is one, SIGHUP (the terminal closed, an ssh session lost).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM,
                                            *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))


def stop_signals() -> list[signal.Signals]:
    """`STOP_SIGNALS` less those this process ignores: `nohup` ignores SIGHUP, so that work goes on."""
    return [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]


class Interrupted(KeyboardInterrupt):
    """Work stopped on Ctrl-C or another of `STOP_SIGNALS` after keeping what it had done; the message says where. A
    `KeyboardInterrupt`, as the Ctrl-C it comes from: a loop that catches `Exception` still stops."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum  # one of STOP_SIGNALS


class TrainingInterrupted(Interrupted):
    """Training stopped on Ctrl-C (or SIGTERM, or SIGHUP) after saving a checkpoint. Carries the run directory; the
    message says how to resume (from the command line, or from Python for runs started there)."""

    def __init__(self, run_dir: str | Path, command_line: bool = True, processes: int = 1, signum: int = 2) -> None:
        self.run_dir = Path(run_dir)
        how = resume_command(run_dir, command_line, processes)
        where = f" in {processes} processes in all, as it ran" if processes > 1 else ""
        super().__init__(f"interrupted; the checkpoint is saved: resume with `{how}`{where}", signum)


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (see `STOP_SIGNALS`) raise an `Interrupted` as Ctrl-C raises KeyboardInterrupt, for
    the length of the block: what was done can then be kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted("interrupted", signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in stop_signals() if signum != signal.SIGINT}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
