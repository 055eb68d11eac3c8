"""Timing helpers shared by the benchmarks: pinned threads, interleaved repeats, medians with ranges, and a
warning when the spread says the machine was too busy for the figures to mean much.

Why interleave: on a shared machine the load drifts over minutes, so timing method A's steps and then
method B's puts the drift into the A/B ratio (one run printed KDPL/FDBPL 13.6x, another 3.71x). Running one
step of each method per round spreads the drift over all of them; the median drops the outliers.
"""

import statistics
import time

import torch

SPREAD_WARNING = 0.25  # (max - min) / median above this: say so next to the figures


def pin_threads(threads, device="cpu"):
    """Fix torch's intra-op threads (``threads`` <= 0: keep torch's choice); returns the count in use."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def interleaved(steps, repeats, warmup=1):
    """``steps``: {label: callable returning a float (seconds) or a dict of seconds}. Runs ``warmup`` untimed
    rounds, then ``repeats`` rounds of one call each, rotating the start each round; returns {label: [results]}."""
    labels = list(steps)
    for _ in range(warmup):
        for label in labels:
            steps[label]()
    out = {label: [] for label in labels}
    for r in range(repeats):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for label in order:
            out[label].append(steps[label]())
    return out


def timed(fn):
    """A callable that runs ``fn`` and returns its wall seconds."""
    def run():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run


def summary(values):
    """{"median", "min", "max", "spread"} of a list of seconds (spread = (max - min) / median)."""
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"median": med, "min": lo, "max": hi, "spread": (hi - lo) / med if med > 0 else 0.0, "n": len(values)}


def spread_warnings(named_values, limit=SPREAD_WARNING):
    """Lines warning about each label whose timings vary by more than ``limit`` of their median."""
    lines = []
    for label, values in named_values.items():
        s = summary(values)
        if s["spread"] > limit:
            lines.append(f"WARNING: {label} timings vary by {s['spread'] * 100:.0f}% of their median "
                         f"({s['min'] * 1e3:.1f}-{s['max'] * 1e3:.1f} ms over {s['n']} repeats): the machine is "
                         "busy; compare medians only, or rerun with more --repeats")
    return lines
