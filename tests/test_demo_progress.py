"""The demo's live progress line reads train.py's progress lines and tqdm bars, and names the step's log."""
import io

from scripts.demo_progress import StepLine

TRAIN = ("epoch [2/10] batch [5/16] time 0.100 (0.120) data 0.001 (0.002) loss 1.2345 (1.3000) acc 50.0000 (48.0) "
         "lr 2.0000e-03 eta 0:00:21\n")


class Console(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_plain_output_names_the_log_and_reports_train_progress():
    console = Console(tty=False)
    line = StepLine("[1/9] CoOp seed 0 train", "out/seed0/log.txt", console=console, interval=0)
    line.write("Loading trainer: CoOp\n")
    line.write(TRAIN)
    lines = console.getvalue().splitlines()
    assert lines[0] == "[1/9] CoOp seed 0 train: started (log: out/seed0/log.txt)"
    assert lines[1].startswith("[1/9] CoOp seed 0 train: epoch 2/10, batch 21/160, eta 0:00:21 (")
    assert lines[1].endswith("; log: out/seed0/log.txt)")
    line.write("Evaluate on the *test* set\n")
    assert "evaluating" in console.getvalue().splitlines()[-1]
    line.write("* accuracy: 50.00%\n")  # no new state: nothing printed
    assert len(console.getvalue().splitlines()) == 3


def test_tqdm_bar_without_newlines_updates_one_terminal_line():
    console = Console(tty=True)
    line = StepLine("[ril] seed 0", "logs/ril_seed0.txt", console=console)
    line.interval = 0
    line.write("\rRIL rank 0:  45%|####5     | 14.7k/32.8k [00:30<00:37, 490crop/s]")
    first, second = console.getvalue().split("\x1b[K")[:2]  # each redraw: carriage return, text, clear to the end
    assert first.startswith("\r[ril] seed 0: starting (") and first.endswith("log: logs/ril_seed0.txt)")
    assert second.startswith("\r[ril] seed 0: 14.7k/32.8k crops, eta 00:37 (") and "\n" not in console.getvalue()
    line.finish()
    assert console.getvalue().endswith("\r\x1b[K")


def test_steps_that_print_nothing_report_their_own_count():
    console = Console(tty=False)
    line = StepLine("[agreement]", "none", console=console, interval=0, unit="models")
    line.update(0, 10)
    line.update(4, 10)
    assert "4/10 models, eta " in console.getvalue().splitlines()[-1]
    assert "0/10 models, eta ?" in console.getvalue()


def test_plain_output_is_throttled():
    console = Console(tty=False)
    line = StepLine("[1/9] CoOp seed 0 train", "log.txt", console=console, interval=3600)
    for _ in range(50):
        line.write(TRAIN)
    assert len(console.getvalue().splitlines()) == 1  # only the "started (log: ...)" line within the interval
