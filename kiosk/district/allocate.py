"""Allowances (DESIGN.md §4, escrow): who may spend which points where, as plain functions.

A station lets a volunteer spend `allowance + the station's own points since the mark` of the
batch it has in force. The district keeps this invariant for every volunteer v:

    sum over stations S of  allowance_S(v)  <=  sum over S of  net_S(v, up to mark_S)

(the right side is the global balance counted at each station's mark). Then whatever each
station lets them spend, the global balance never goes below zero.

The district can't know for sure which batch a station has in force when a request's answer was
lost, so it works with claims: the most a station could let them spend of what the district has
counted, over every batch it may have in force:

    claim_S(v) = max over candidate batches c of  allowance_c(v) + net_S(v, after mark_c)

and changes allowances in two phases each night:
1. every station gets min(desired, claim): never more than it could spend already, so the
   invariant holds whichever of these batches arrive;
2. the points this freed (the global balance minus what every station may still claim: the new
   value where phase 1 was acknowledged, the old claim where it was not) go as top-ups to the
   stations that should get more (acknowledged in phase 1 only).
Desired: the whole balance at the station where the volunteer was last active, nothing elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Grant:
    """A batch as far as allowances go: its number, its mark, and the allowance per volunteer."""

    issued: int
    mark: int
    allowances: Mapping[str, int] = field(default_factory=dict)


NO_GRANT = Grant(issued=0, mark=0)  # a station that never applied a batch: its own points only


def claims(candidates: Iterable[Grant], net_after: Callable[[int], Mapping[str, int]]) -> dict[str, int]:
    """Per volunteer, the most the station could let them spend of what the district counted.

    `candidates` are the batches the station may have in force (at least one; NO_GRANT for a
    station that never applied one); `net_after(mark)` is the station's net points per volunteer
    in the changes the district holds after `mark`.
    """
    values = []
    for g in candidates:
        net = net_after(g.mark)
        values.append({v: g.allowances.get(v, 0) + net.get(v, 0) for v in set(g.allowances) | set(net)})
    if not values:
        raise ValueError("a station has at least one candidate batch (NO_GRANT when it never applied one)")
    return {v: max(val.get(v, 0) for val in values) for v in set().union(*values)}


def desired(balance: Mapping[str, int], target: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """{station: {volunteer: points}}: the whole (positive) balance where they were last active."""
    out: dict[str, dict[str, int]] = {}
    for v, g in balance.items():
        if g > 0 and v in target:
            out.setdefault(target[v], {})[v] = g
    return out


def phase_one(want: Mapping[str, Mapping[str, int]], claim: Mapping[str, Mapping[str, int]],
              stations: Iterable[str]) -> dict[str, dict[str, int]]:
    """Each station's first batch: min(desired, claim) per volunteer (never above its claim)."""
    out = {}
    for s in stations:
        w, c = want.get(s, {}), claim.get(s, {})
        out[s] = {v: a for v in set(w) | set(c) if (a := min(w.get(v, 0), max(0, c.get(v, 0)))) > 0}
    return out


def top_up(balance: Mapping[str, int], want: Mapping[str, Mapping[str, int]],
           claim: Mapping[str, Mapping[str, int]], first: Mapping[str, Mapping[str, int]],
           acked: Iterable[str]) -> dict[str, dict[str, int]]:
    """The second batch of the stations that should get more: their full new allowances.

    `claim` covers every station the district knows (pushed tonight or not); `first` is phase
    one's allowances; `acked` the stations whose phase-one batch was acknowledged. Returns only
    the stations whose allowances go up.
    """
    acked = set(acked)
    committed: dict[str, int] = {}
    for s, c in claim.items():
        held = first.get(s, {}) if s in acked else {v: max(0, x) for v, x in c.items()}
        for v, x in held.items():
            committed[v] = committed.get(v, 0) + x
    for s in acked - set(claim):
        for v, x in first.get(s, {}).items():
            committed[v] = committed.get(v, 0) + x
    headroom = {v: balance.get(v, 0) - committed.get(v, 0) for v in set(balance) | set(committed)}
    out: dict[str, dict[str, int]] = {}
    for s in sorted(acked):
        now = dict(first.get(s, {}))
        raised = False
        for v, w in want.get(s, {}).items():
            gap = w - now.get(v, 0)
            room = headroom.get(v, 0)
            if gap > 0 and room > 0:
                inc = min(gap, room)
                now[v] = now.get(v, 0) + inc
                headroom[v] = room - inc
                raised = True
        if raised:
            out[s] = now
    return out
