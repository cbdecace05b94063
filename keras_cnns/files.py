"""Fault injection for the recovery tests: die at a named point, as a power cut would.

`KERAS_CNNS_KILL_AT=state:3` sends SIGKILL to this process the third time it reaches the point
named `state`. The points sit where a kill is most harmful: inside an epoch (`batch`), between
the files of a state commit (`state`) and of a best checkpoint (`best`), during evaluation
(`evaluate`) and before an export's final rename (`export`). Unset, `reach` costs a dictionary
lookup. tests/test_resume.py kills runs at each point and checks that the identical command then
ends exactly where the uninterrupted run ends.
"""

from __future__ import annotations

import os
import signal

ENV = "KERAS_CNNS_KILL_AT"
_arrivals: dict[str, int] = {}


def reach(point: str) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    name, _, count = target.partition(":")
    if name != point:
        return
    _arrivals[point] = _arrivals.get(point, 0) + 1
    if _arrivals[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
