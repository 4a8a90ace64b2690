"""Progress bars: tqdm's own on a terminal or in a notebook; in a log file (Slurm, nohup, CI), one plain line
every `LOG_INTERVAL_S` seconds instead of a bar redrawn in place ten times a second."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def progress_bar(*, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr (``kwargs`` as tqdm takes them), drawn as suits where stderr goes."""
    stream = sys.stderr
    if not enabled:
        return tqdm(disable=True, **kwargs)
    if _redraws_in_place(stream):
        return _in_place_bar(stream)(**kwargs)
    # Every bar on line 0: a bar opened inside another (validation within an epoch) would otherwise move the
    # cursor to a line of its own, which a log file shows as escape codes.
    return _LogBar(file=LineStream(stream), mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, ncols=100,
                   position=0, **kwargs)


def progress_note(text: str) -> None:
    """A line on stderr above any progress bar drawn there: what a long job has done so far (an epoch's
    scores), where a caller asked for progress and takes no records of its own."""
    tqdm.write(text, file=sys.stderr)


def _in_place_bar(stream: TextIO) -> type[tqdm]:
    """tqdm's widget in a notebook that has ipywidgets, else its text bar, which notebooks redraw in place too
    (`tqdm.auto` would warn, in a notebook without ipywidgets, that it needs them)."""
    if _in_notebook(stream) and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    return tqdm


class _LogBar(tqdm):
    """A bar in a log file ends with its last line, unless that line is already written: a log file has no
    line drawn in place for ``leave=False`` to clear."""

    def close(self) -> None:
        if not self.disable:
            self.leave = self.last_print_n != self.n
        super().close()


def _redraws_in_place(stream: TextIO) -> bool:
    """A terminal, or a notebook's output (whose streams are no terminals but show tqdm's widgets)."""
    is_tty = getattr(stream, "isatty", lambda: False)
    return bool(is_tty()) or _in_notebook(stream)


def _in_notebook(stream: TextIO) -> bool:
    return type(stream).__module__.startswith("ipykernel")


class LineStream:
    """A text stream for tqdm that turns each redraw (``\\r`` + the bar) into a line of its own and drops the
    blank redraws that clear a bar, so a log file gets whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
