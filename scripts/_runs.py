"""Resumable runs of ``train.py`` and ``ril_tools.build`` in parallel subprocesses (the toy table scripts' engine).

A :class:`Task` is one command with its output folder. :func:`run_tasks` skips the tasks whose output already
holds a result (so an interrupted sweep continues where it stopped), runs the others ``jobs`` at a time in
child processes, each writing its console output to ``OUT/console.txt``, and waits for a task's prerequisites
(``after``) before starting it. One line per finished task shows the count, the wall time and the folder; a
failed task is reported with the tail of its console file and the sweep goes on with the tasks that do not
depend on it.
"""

import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from engine.results import parse_log

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

__all__ = ["Task", "run_tasks", "task_done", "result_of"]


@dataclass
class Task:
    """``kind`` "train" (a training run, its log's final test), "eval" (an --eval-only run) or "build" (an RIL
    table). ``argv`` goes to ``train.py`` (train / eval) or ``python -m ril_tools.build`` (build)."""

    kind: str
    out: str
    argv: list
    after: list = field(default_factory=list)  # outs of tasks that must finish first

    def command(self):
        if self.kind == "build":
            return [sys.executable, "-m", "ril_tools.build"] + list(self.argv)
        return [sys.executable, osp.join(REPO, "train.py")] + list(self.argv)


def task_done(task):
    if task.kind == "build":
        return osp.isfile(osp.join(task.out, "manifest.json"))
    log = osp.join(task.out, "log.txt")
    return osp.isfile(log) and parse_log(log, test_log=task.kind == "eval") is not None


def result_of(out, kind="train"):
    """The accuracy a finished train / eval task logged, or None."""
    log = osp.join(out, "log.txt")
    return parse_log(log, test_log=kind == "eval") if osp.isfile(log) else None


def _run_one(task, env):
    os.makedirs(task.out, exist_ok=True)
    console = osp.join(task.out, "console.txt")
    with open(console, "a") as f:
        rc = subprocess.call(task.command(), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    return rc


def _tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).rstrip()
    except OSError:
        return ""


def run_tasks(tasks, jobs=2, threads_per_job=1, log=print):
    """Run the unfinished ``tasks`` (deduplicated by ``out``), ``jobs`` at a time. Returns the outs that failed."""
    unique = {}
    for t in tasks:
        unique.setdefault(t.out, t)
    pending = {out: t for out, t in unique.items() if not task_done(t)}
    if not pending:
        return []
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_job), MKL_NUM_THREADS=str(threads_per_job),
               TQDM_DISABLE="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    total, finished, failed = len(pending), 0, []
    start = time.time()
    log(f"[runs] {total} to run ({len(unique) - total} already done), {jobs} at a time")

    def ready(t):  # every prerequisite finished (a running one is still pending)
        return all(dep not in pending and dep not in failed for dep in t.after)

    def blocked(t):
        return any(dep in failed for dep in t.after)

    running = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for out, t in list(pending.items()):
                if len(running) >= jobs:
                    break
                if out in running.values():
                    continue
                if blocked(t):
                    failed.append(out)
                    del pending[out]
                    log(f"[runs] skipped {out}: a task it needs failed")
                elif ready(t):
                    running[pool.submit(_run_one, t, env)] = out
                    t.started = time.time()
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                out = running.pop(fut)
                t = pending.pop(out)
                finished += 1
                took = time.time() - t.started
                if fut.result() != 0 or not task_done(t):
                    failed.append(out)
                    log(f"[runs] FAILED {out} (exit {fut.result()}); end of {out}/console.txt:\n"
                        f"{_tail(osp.join(out, 'console.txt'))}")
                else:
                    log(f"[runs] {finished}/{total} {t.kind} {out} ({took:.0f} s; "
                        f"{(time.time() - start) / 60:.1f} min so far)")
    return failed
