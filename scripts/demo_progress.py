"""One live console line per long demo step: what runs, how far it is (done/total, ETA) and where its log is.

A step's own output (train.py's log lines on stdout, the RIL build's tqdm bar on stderr) is written into a
:class:`StepLine` instead of the console. The line reads the progress out of that text: train.py's
``epoch [e/E] batch [b/B] ... eta H:MM:SS`` lines and tqdm's ``n/total [elapsed<eta`` bars. On a terminal the
line is redrawn in place; when the output goes to a file or a pipe (CI, ``| tee``), a progress line is printed
at most every ``interval`` seconds, so long steps are never silent but logs stay short.
"""
import re
import sys
import time

TRAIN_LINE = re.compile(r"epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\].*\beta (\S+)")
BAR = re.compile(r"([\d.]+)([kM]?)/([\d.]+)([kM]?) \[[\d:]+<([\d:?]+)")


class StepLine:
    """A file-like sink for one step's output that keeps one progress line on ``console`` up to date."""

    def __init__(self, label, log, console=None, interval=30.0, unit="crops"):
        self.label, self.log, self.unit = label, log, unit
        self.console = console or sys.__stdout__
        self.live = hasattr(self.console, "isatty") and self.console.isatty()
        self.interval = 0.5 if self.live else interval
        self.status = "starting"
        self.start = self._last = time.time()
        self._shown = self.status
        self._buffer = ""
        # say where the log is as soon as the step starts (a plain line when the output is not a terminal)
        self._emit(self._text() if self.live else f"{self.label}: started (log: {self.log})", newline=not self.live)

    # ------------------------------------------------------------------ file protocol (stdout / stderr stand-in)
    def write(self, text):
        self._buffer += text
        *parts, self._buffer = re.split(r"[\r\n]", self._buffer)
        for part in parts + [self._buffer]:  # tqdm redraws with '\r' and no newline: read the unfinished part too
            self._parse(part)
        self._refresh()
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False  # the step's own tools must not draw on the console themselves

    # ------------------------------------------------------------------ progress
    def _parse(self, text):
        m = TRAIN_LINE.search(text)
        if m:
            epoch, epochs, batch, batches, eta = m.groups()
            done = (int(epoch) - 1) * int(batches) + int(batch)
            self.status = f"epoch {epoch}/{epochs}, batch {done}/{int(epochs) * int(batches)}, eta {eta}"
            return
        m = BAR.search(text)
        if m:
            self._set(m.group(1) + m.group(2), m.group(3) + m.group(4), m.group(5))  # as tqdm prints them (1.02k)
            return
        if text.startswith("Evaluate on the"):
            self.status = "evaluating"

    def _set(self, done, total, eta):
        self.status = f"{done}/{total} {self.unit}, eta {eta}"

    def update(self, done, total):
        """Progress reported by the caller (a step that prints nothing itself); the ETA assumes a steady pace."""
        elapsed = time.time() - self.start
        left = elapsed / done * (total - done) if done else None
        self._set(done, total, "?" if left is None else time.strftime("%H:%M:%S", time.gmtime(left)))
        self._refresh()

    def _text(self):
        return f"{self.label}: {self.status} ({time.time() - self.start:.0f} s; log: {self.log})"

    def _refresh(self):
        now = time.time()
        if now - self._last < self.interval or self.status == self._shown:
            return
        self._last, self._shown = now, self.status
        self._emit(self._text(), newline=not self.live)

    def _emit(self, text, newline=True):
        if self.live:
            self.console.write("\r" + text + "\x1b[K" + ("\n" if newline else ""))
        else:
            self.console.write(text + "\n")
        self.console.flush()

    def finish(self):
        """Clear the live line (the caller prints the step's result next)."""
        if self.live:
            self.console.write("\r\x1b[K")
            self.console.flush()
