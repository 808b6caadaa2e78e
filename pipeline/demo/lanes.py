"""The order in which `make demo-2lanes` hands generators to its two lanes.

`xargs -P 2` gives the next generator to whichever lane frees first, so the order decides how well the two
lanes balance, and the slower lane is the demo's critical path. By default the DMs go first (they are the long
ones); a profile can set `demo.lane_order` from measured stage times instead. That key is read by no stage,
so changing it never re-trains anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.errors import ConfigError

__all__ = ["lane_order", "makespan"]


def lane_order(demo: Mapping[str, Any]) -> list[str]:
    """Generator names in lane order: `demo.lane_order` if set (every generator once), else DMs first."""
    generators: Mapping[str, Any] = demo.get("generators") or {}
    order = demo.get("lane_order")
    if order is None:
        return sorted(generators, key=lambda name: generators[name].get("family") != "dm")
    if not isinstance(order, list) or not all(isinstance(name, str) for name in order):
        raise ConfigError(f"demo.lane_order must be a list of generator names, got {order!r}")
    unknown = sorted(set(order) - set(generators))
    missing = sorted(set(generators) - set(order))
    repeated = sorted({name for name in order if order.count(name) > 1})
    if unknown or missing or repeated:
        problems = [
            f"{label}: {', '.join(names)}"
            for label, names in (("unknown", unknown), ("missing", missing), ("repeated", repeated))
            if names
        ]
        raise ConfigError(
            f"demo.lane_order must name every generator of demo.generators once ({'; '.join(problems)})"
        )
    return list(order)


def makespan(order: Sequence[str], minutes: Mapping[str, float], lanes: int = 2) -> float:
    """Wall time of list scheduling as `xargs -P lanes` does it: each job goes to the lane that frees first.

    A planning aid (job times are measured stage times, which change when the lanes contend for memory).
    """
    free_at = [0.0] * lanes
    for name in order:
        lane = min(range(lanes), key=free_at.__getitem__)
        free_at[lane] += minutes[name]
    return max(free_at)
