"""Progress reporting for ``fit`` and other long loops.

tqdm is used when installed; otherwise one stderr line is rewritten with
``\\r``.  Silent unless stderr is a terminal, so logs, CI output and piped
runs stay clean; ``FASTNN_PROGRESS=1`` forces it on, ``FASTNN_PROGRESS=0`` off.
"""

from __future__ import annotations

import numbers
import os
import sys
import time

__all__ = ["progress_bar", "EpochReporter"]


class _Silent:
    def update(self, n=1, **postfix):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Tqdm(_Silent):
    def __init__(self, bar):
        self._bar = bar

    def update(self, n=1, **postfix):
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)

    def close(self):
        self._bar.close()


def _fmt(value):
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:.4g}"
    return str(value)


class _Plain(_Silent):
    """One line rewritten in place, at most ~10 times a second."""

    interval = 0.1

    def __init__(self, total, desc, file):
        self.total, self.desc, self.file = total, desc, file
        self.n = 0
        self.postfix = {}
        self._start = time.monotonic()
        self._last = None           # time of the last redraw
        self._width = 0
        self._closed = False

    def update(self, n=1, **postfix):
        self.n += n
        self.postfix.update(postfix)
        if self._closed:
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval or (
                self.total is not None and self.n >= self.total):
            self._draw(now)

    def _draw(self, now):
        self._last = now
        self._drawn = (self.n, len(self.postfix))
        elapsed = now - self._start
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        if self.total:
            count = f"{100.0 * self.n / self.total:3.0f}% {count}"
        rate = f"{self.n / elapsed:.1f}it/s" if elapsed > 0 else "?it/s"
        parts = [p for p in (self.desc, count, f"[{elapsed:.1f}s, {rate}]") if p]
        if self.postfix:
            parts.append(", ".join(f"{k}={_fmt(v)}" for k, v in self.postfix.items()))
        line = " ".join(parts)
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        try:
            self.file.write("\r" + line + pad)
            self.file.flush()
        except (OSError, ValueError):   # closed or broken stream: stop reporting
            self._closed = True

    def close(self):
        if self._closed:
            return
        if self._last is None or self._drawn != (self.n, len(self.postfix)):
            self._draw(time.monotonic())    # final numbers, even if rate-limited
        if self._closed:
            return
        self._closed = True
        try:
            self.file.write("\n")
            self.file.flush()
        except (OSError, ValueError):
            pass


def _wanted(enabled, stream):
    if not enabled or stream is None:
        return False
    forced = os.environ.get("FASTNN_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def progress_bar(total=None, desc="", enabled=True, force=False):
    """Return a bar with ``update(n=1, **postfix)`` and ``close()`` (also a
    context manager); a no-op object when reporting is off (``force`` draws it
    even when stderr is not a terminal)."""
    stream = sys.stderr
    if not (force and enabled and stream is not None) and not _wanted(enabled, stream):
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, desc, stream)
    return _Tqdm(tqdm(total=total, desc=desc or None, file=stream,
                      dynamic_ncols=True, mininterval=0.1, leave=True))


def _metrics_text(logs):
    return " - ".join(f"{k}: {_fmt(v)}" for k, v in logs.items())


class EpochReporter:
    """What ``fit`` prints, Keras style: ``verbose`` 0 is silent, 1 a bar per
    epoch (stderr) closed with the epoch's metrics, 2 one line per epoch
    (stdout). "auto" is 1 on a terminal and 2 otherwise (logs, CI, notebooks'
    captured output), so a run is never silent by accident."""

    def __init__(self, verbose, epochs, n_batches):
        if verbose == "auto":
            verbose = 1 if _wanted(True, sys.stderr) else 2
        if isinstance(verbose, bool) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
        self.verbose, self.epochs, self.n_batches = verbose, epochs, n_batches
        self._bar = _Silent()
        self._start = 0.0

    def begin_epoch(self, epoch):
        self._start = time.monotonic()
        if self.verbose == 1:
            self._bar = progress_bar(self.n_batches, f"epoch {epoch + 1}/{self.epochs}",
                                     enabled=True, force=True)

    def batch(self, loss):
        self._bar.update(1, loss=f"{loss:.4f}")

    def end_epoch(self, epoch, logs, note=""):
        seconds = time.monotonic() - self._start
        if self.verbose == 1:
            self._bar.update(0, **{k: _fmt(v) for k, v in logs.items()})
            self._bar.close()
        elif self.verbose == 2:
            line = f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {_metrics_text(logs)}"
            print(line + (f" - {note}" if note else ""), flush=True)


def bar_verbosity(enabled=True):
    """fit's verbose for callers that print their own per-epoch lines: the bar
    when it would be wanted (a terminal, or FASTNN_PROGRESS=1), else silent."""
    return 1 if _wanted(enabled, sys.stderr) else 0
