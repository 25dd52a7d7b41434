"""Seconds per stage of a piece of work, for the apps' per-frame breakdowns and the demo's table."""

from __future__ import annotations

import time
from contextlib import contextmanager


class StageClock:
    """``with clock("sweep"): ...`` adds the block's seconds to ``seconds["sweep"]`` (a stage run
    twice adds up; with ``seconds`` None nothing is kept)."""

    def __init__(self, seconds: dict | None = None):
        self.seconds = seconds

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.seconds is not None:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def table(self, total: float) -> str:
        """Where the time went: a Markdown table of the stages, the rest, and ``total``."""
        rows = [f"| {stage} | {seconds:.1f} | {100 * seconds / total:.0f} % |" for stage, seconds in self.seconds.items()]
        rest = total - sum(self.seconds.values())  # what no stage timed: reading configs, printing
        return "\n".join(["where the time went:", "| stage | seconds | share |", "|---|---|---|", *rows,
                          f"| other | {rest:.1f} | {100 * rest / total:.0f} % |", f"| total | {total:.1f} | 100 % |"])
