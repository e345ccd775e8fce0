"""A model of the escrow (DESIGN.md §4, "Points earned at A, spent at B") that drives kiosk.district.allocate.

Plain Python, no Flask, no database: stations and the district are small objects; the allowance
arithmetic is the real `claims`, `desired`, `phase_one` and `top_up`.

Station S: an append-only log of (seq, volunteer, points, tick), seq its own counter, `tick` a
global event counter (the model's clock, used only to find where a volunteer was last active), and
the batch in force, a `Grant` (NO_GRANT when it never applied one). What S lets v spend is
    available_S(v) = allowance(v) + S's own points with seq > mark      (kiosk.inbox.standing)
(NO_GRANT has mark 0: all its own points). Earning is always allowed; a spend, or a correction
that takes points back, is refused above available_S(v). A batch is refused (kiosk.inbox.apply's
StaleBatch) when its `issued` is not above the one in force or its mark is below the one in force;
the same batch again gets its first answer.

The district knows only what it pulled: per station its log up to the seq it copied (the "pulled
upto") and the `issued` of the batch in force at that moment, plus the answers it got to the
batches it sent. A push follows allocate.py's docstring:
  G(v) = the sum of pulled points; target(v) = the station of v's latest pulled entry;
  claims per station over the candidate batches: the newest one the district knows the station
  applied (acknowledged, or seen in force on a pull; NO_GRANT if none) and every later one whose
  outcome is unknown, with net_after(mark) from pulled data;
  phase 1 (`phase_one`) for the stations pulled tonight, mark = that station's pulled upto;
  phase 2 (`top_up`) for the stations whose phase 1 was acknowledged, with the same mark.
Each delivery is ok (the district gets the answer: applied, or stale), answer lost (the station
applied or refused it; the district doesn't know), lost (never arrives), late (arrives at some
later step, unless the district retries it first and then gets the answer), or refused (a definite
error before the station looked at it; the district knows it was not applied).

Machines (every step checks the invariants below, for every volunteer v; balance(v) is the true
global balance, the sum of every station's whole log, pulled or not):
- `QuietNights`: a night pulls every station (each pull may fail) and pushes in one step, so nothing
  happens at a station between its pull and the push; batches sent "late" arrive during the day.
- `BusyNights`: pulls are steps of their own; stations keep working between a pull and the push.
Both also have a `clean_night` step (every pull and delivery ok) that checks liveness. Deliveries
go through half of the time and most steps concern one volunteer, so that more happens to each;
at 200 examples the search still rarely hits the one sequence that shows a wrong candidate set,
which the two `test_a_*` examples below pin down.
With the stations as they are (kiosk.inbox), what holds is allocate.py's invariant
    escrow:     sum over S of available_S(v)  <=  balance(v)
and liveness: after a clean night (every station pulled, nothing happened at any station after its
pull, every delivery ok) v's target station may spend all of G(v) (= balance(v)) and every other
station nothing. One clean night is enough: `top_up` counts an acknowledged station at its phase-1
allowance, not at its old claim, so a still-unknown older batch holds nothing back.
That invariant alone is NOT the safety the escrow is for:
    spendable:  sum over S of max(0, available_S(v))  <=  balance(v)
(together with available_S(v) >= 0 and balance(v) >= 0). The escrow inequality bounds a sum in
which a station's negative `available` cancels another's positive one, and a station's available
does go negative: a batch lowers its allowance below what was already spent there after the
batch's mark (spent between the district's pull and the batch's arrival). The district, not
knowing about that spend, gives the points it "freed" to another station, where they are spent a
second time (found by this model; the two sequences are kept below). So the station refuses a
batch that would leave a volunteer below zero there (kiosk/inbox.py: _refuse_overdraw; `guard`
here) and the district counts a refused batch as not applied: `GuardedQuietNights` and
`GuardedBusyNights`, which model the product as it is, check every property and pass.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kiosk.district.allocate import NO_GRANT, Grant, claims, desired, phase_one, top_up

VOLUNTEERS = ("v1", "v2")
OUTCOMES = ("ok", "answer_lost", "lost", "late", "refused")
FATES = st.sampled_from(("ok",) * 4 + OUTCOMES[1:])  # half of the deliveries go through


# --- the model ------------------------------------------------------------------------------------

@dataclass
class Station:
    name: str
    guard: bool = False  # candidate fix: refuse a batch that would leave a volunteer below zero here
    log: list[tuple[int, str, int, int]] = field(default_factory=list)  # (seq, volunteer, points, tick)
    in_force: Grant = NO_GRANT
    applied: set[int] = field(default_factory=set)  # `issued` of every batch it applied
    in_flight: list[Grant] = field(default_factory=list)  # sent to it, not arrived yet
    touched: bool = False  # something happened here since the district's last pull

    @property
    def top(self) -> int:
        return len(self.log)

    def since(self, mark: int, v: str) -> int:
        return sum(p for seq, w, p, _ in self.log if w == v and seq > mark)

    def available(self, v: str) -> int:
        return self.in_force.allowances.get(v, 0) + self.since(self.in_force.mark, v)

    def write(self, v: str, points: int, tick: int) -> None:
        self.log.append((self.top + 1, v, points, tick))
        self.touched = True

    def receive(self, g: Grant) -> bool:
        """Whether the batch is (or was) applied here."""
        if g.issued in self.applied:
            return True  # the same batch again: its first answer
        if g.issued <= self.in_force.issued or g.mark < self.in_force.mark or g.mark > self.top:
            return False  # stale
        if self.guard and any(g.allowances.get(v, 0) + self.since(g.mark, v) < 0 for v in VOLUNTEERS):
            return False
        self.in_force = g
        self.applied.add(g.issued)
        self.touched = True
        return True


@dataclass
class Pulled:
    """What the district holds of one station."""

    log: list[tuple[int, str, int, int]] = field(default_factory=list)
    seen_in_force: int = 0  # `issued` of the batch in force at the last pull (0: none)
    sent: dict[int, tuple[Grant, str]] = field(default_factory=dict)  # issued -> (batch, acked|rejected|unknown)

    @property
    def upto(self) -> int:
        return len(self.log)

    def net_after(self, mark: int) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for seq, v, p, _ in self.log:
            if seq > mark:
                out[v] += p
        return dict(out)

    def candidates(self) -> list[Grant]:
        known = max([self.seen_in_force] + [i for i, (_, k) in self.sent.items() if k == "acked"])
        base = self.sent[known][0] if known else NO_GRANT
        return [base] + [g for i, (g, k) in sorted(self.sent.items()) if k == "unknown" and i > known]


class World:
    """The stations, the district, and the protocol's steps (for the machines and the examples)."""

    def __init__(self, names=("A", "B"), guard=False):
        self.stations = {s: Station(s, guard=guard) for s in names}
        self.district = {s: Pulled() for s in names}
        self.tick = 0
        self.issued = 0
        self.tonight: set[str] = set()  # pulled since the last push

    # at a station
    def _write(self, s: str, v: str, points: int) -> None:
        self.tick += 1
        self.stations[s].write(v, points, self.tick)

    def earn(self, s: str, v: str, n: int) -> None:
        assert n > 0
        self._write(s, v, n)

    def visit(self, s: str, v: str) -> None:
        """Activity without points (a check-in): makes s the station where v was last active."""
        self._write(s, v, 0)

    def spend(self, s: str, v: str, n: int) -> bool:
        """A spend, or a correction taking points back: refused above what is available here."""
        if n <= 0 or n > self.stations[s].available(v):
            return False
        self._write(s, v, -n)
        return True

    def available(self, v: str) -> dict[str, int]:
        return {s: x.available(v) for s, x in self.stations.items()}

    def balance(self, v: str) -> int:
        return sum(p for x in self.stations.values() for _, w, p, _ in x.log if w == v)

    # the district
    def pull(self, s: str) -> None:
        x, d = self.stations[s], self.district[s]
        d.log = list(x.log)
        d.seen_in_force = x.in_force.issued
        x.touched = False
        self.tonight.add(s)

    def send(self, s: str, g: Grant, outcome: str) -> str:
        """Deliver a batch; returns what the district now knows of it: acked, rejected or unknown."""
        x = self.stations[s]
        if outcome == "ok":
            known = "acked" if x.receive(g) else "rejected"
        elif outcome == "answer_lost":
            x.receive(g)
            known = "unknown"
        elif outcome in ("lost", "late"):
            if outcome == "late":
                x.in_flight.append(g)
            known = "unknown"
        else:
            assert outcome == "refused"
            known = "rejected"
        self.district[s].sent[g.issued] = (g, known)
        return known

    def arrive_late(self, s: str, i: int = 0) -> bool:
        x = self.stations[s]
        return x.receive(x.in_flight.pop(i))

    def retry(self, s: str, issued: int) -> str:
        """The district sends an unknown batch again, and this time gets the answer."""
        x, d = self.stations[s], self.district[s]
        g, _ = d.sent[issued]
        x.in_flight = [y for y in x.in_flight if y.issued != issued]
        d.sent[issued] = (g, "acked" if x.receive(g) else "rejected")
        return d.sent[issued][1]

    def push(self, outcome=lambda s, phase: "ok") -> dict:
        """Tonight's push, from tonight's pulls; `outcome(station, phase)` decides each delivery."""
        d = self.district
        balance: dict[str, int] = defaultdict(int)
        latest: dict[str, tuple[int, str]] = {}
        for s, pulled in d.items():
            for _, v, p, tick in pulled.log:
                balance[v] += p
                if tick > latest.get(v, (0, ""))[0]:
                    latest[v] = (tick, s)
        balance = dict(balance)
        target = {v: s for v, (_, s) in latest.items()}
        claim = {s: claims(pulled.candidates(), pulled.net_after) for s, pulled in d.items()}
        want = desired(balance, target)
        first = phase_one(want, claim, sorted(self.tonight))
        answers, acked = {}, []
        for s in sorted(self.tonight):
            self.issued += 1
            answers[s, 1] = self.send(s, Grant(self.issued, d[s].upto, first[s]), outcome(s, 1))
            if answers[s, 1] == "acked":
                acked.append(s)
        ups = top_up(balance, want, claim, first, acked)
        for s in sorted(ups):
            self.issued += 1
            answers[s, 2] = self.send(s, Grant(self.issued, d[s].upto, ups[s]), outcome(s, 2))
        self.tonight = set()
        return dict(balance=balance, target=target, claim=claim, want=want, first=first, acked=acked,
                    ups=ups, answers=answers)

    def night(self, pulled=None, outcome=lambda s, phase: "ok") -> dict:
        """Pull the stations in `pulled` (all by default; the others' pulls fail), then push."""
        for s in self.stations:
            if pulled is None or s in pulled:
                self.pull(s)
        return self.push(outcome)

    # what must hold
    def check_escrow(self) -> None:
        for v in VOLUNTEERS:
            avail, bal = self.available(v), self.balance(v)
            assert sum(avail.values()) <= bal, f"escrow: {v}: sum of available {avail} > balance {bal}"

    def check_safe(self) -> None:
        self.check_escrow()
        for v in VOLUNTEERS:
            avail, bal = self.available(v), self.balance(v)
            assert sum(max(0, a) for a in avail.values()) <= bal, \
                f"spendable: {v}: what the stations let them spend, {avail}, > balance {bal}"
            assert min(avail.values()) >= 0, f"{v}: available {avail} < 0"
            assert bal >= 0, f"{v}: balance {bal} < 0"

    def check_clean_night(self, night: dict) -> None:
        for v in VOLUNTEERS:
            g = night["balance"].get(v, 0)
            assert g == self.balance(v)
            expect = {s: g if g > 0 and night["target"].get(v) == s else 0 for s in self.stations}
            assert self.available(v) == expect, (v, night)


# --- the machines ---------------------------------------------------------------------------------

picks = st.integers(0, 5)  # a station: picks % the number of stations (uniform for 2 and 3)
volunteers = st.sampled_from(("v1", "v1", "v1", "v2"))  # mostly one: more happens to each


class QuietNights(RuleBasedStateMachine):
    guard = False

    @initialize(n=st.integers(2, 3))
    def setup(self, n):
        self.world = World(("A", "B", "C")[:n], guard=self.guard)
        self.names = list(self.world.stations)

    def _s(self, i):
        return self.names[i % len(self.names)]

    @rule(i=picks, v=volunteers, n=st.integers(1, 60))
    def earn(self, i, v, n):
        self.world.earn(self._s(i), v, n)

    @rule(i=picks, v=volunteers)
    def visit(self, i, v):
        self.world.visit(self._s(i), v)

    @rule(i=picks, v=volunteers, data=st.data())
    def spend(self, i, v, data):
        """A spend or a correction taking points back: often all that is available, sometimes too much."""
        s = self._s(i)
        avail = self.world.stations[s].available(v)
        n = data.draw(st.one_of(st.just(avail), st.integers(1, 60)), label="points")
        assert self.world.spend(s, v, n) == (0 < n <= avail)

    @precondition(lambda self: any(x.in_flight for x in self.world.stations.values()))
    @rule(data=st.data())
    def arrive_late(self, data):
        x = data.draw(st.sampled_from([x for x in self.world.stations.values() if x.in_flight]), label="at")
        self.world.arrive_late(x.name, data.draw(st.integers(0, len(x.in_flight) - 1), label="which"))

    def unknown(self):
        return [(s, j) for s, d in self.world.district.items() for j, (_, k) in d.sent.items() if k == "unknown"]

    @precondition(lambda self: self.unknown())
    @rule(data=st.data())
    def retry(self, data):
        self.world.retry(*data.draw(st.sampled_from(self.unknown()), label="batch"))

    def pulls_tonight(self, data):
        ok = data.draw(st.lists(st.sampled_from((True, True, False)), min_size=len(self.names),
                                max_size=len(self.names)), label="pulls ok")
        for s, good in zip(self.names, ok, strict=True):
            if good:
                self.world.pull(s)

    @rule(data=st.data())
    def night(self, data):
        w = self.world
        self.pulls_tonight(data)
        clean = w.tonight == set(self.names) and not any(x.touched for x in w.stations.values())
        fates = []

        def outcome(s, phase):
            fates.append(data.draw(FATES, label=f"{s} phase {phase}"))
            return fates[-1]

        night = w.push(outcome)
        if clean and all(f == "ok" for f in fates):
            w.check_clean_night(night)

    @rule()
    def clean_night(self):
        """Every pull and every delivery succeeds, nothing happens in between: the liveness check."""
        self.world.check_clean_night(self.world.night())

    @invariant()
    def holds(self):
        if hasattr(self, "world"):
            self.world.check_safe() if self.guard else self.world.check_escrow()


class BusyNights(QuietNights):
    def pulls_tonight(self, data):
        pass  # the `pull` steps did them, with station steps in between

    @rule(i=picks)
    def pull(self, i):
        self.world.pull(self._s(i))


class GuardedQuietNights(QuietNights):
    guard = True


class GuardedBusyNights(BusyNights):
    guard = True


SETTINGS = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestQuietNights = QuietNights.TestCase
TestBusyNights = BusyNights.TestCase
TestGuardedQuietNights = GuardedQuietNights.TestCase
TestGuardedBusyNights = GuardedBusyNights.TestCase
TestQuietNights.settings = TestBusyNights.settings = SETTINGS
TestGuardedQuietNights.settings = TestGuardedBusyNights.settings = SETTINGS


# --- the named scenarios --------------------------------------------------------------------------

@pytest.mark.parametrize("last_at", ["A", "B"])
def test_earned_at_a_spendable_where_last_active_after_one_clean_night(last_at):
    w = World()
    if last_at == "B":
        w.earn("A", "v1", 100)
        w.visit("B", "v1")
    else:
        w.visit("B", "v1")
        w.earn("A", "v1", 100)
    night = w.night()
    assert night["target"] == {"v1": last_at}
    other = "A" if last_at == "B" else "B"
    assert w.available("v1") == {last_at: 100, other: 0}
    assert not w.spend(other, "v1", 1)
    assert w.spend(last_at, "v1", 100)
    w.check_safe()


@pytest.mark.parametrize("fate", ["answer_lost", "lost", "late", "refused"])
def test_no_top_up_for_b_while_a_decrease_is_not_acknowledged(fate):
    w = World()
    w.earn("A", "v1", 100)
    w.night()
    assert w.available("v1") == {"A": 100, "B": 0}
    w.visit("B", "v1")  # now B should get the 100, A nothing
    night = w.night(outcome=lambda s, phase: fate if s == "A" else "ok")
    assert night["first"] == {"A": {}, "B": {}} and night["acked"] == ["B"]
    assert night["ups"] == {}, "B's top-up must wait for A's decrease to be acknowledged"
    assert w.available("v1")["B"] == 0
    assert w.available("v1")["A"] == (0 if fate == "answer_lost" else 100)
    w.check_safe()
    # The next clean night moves the points; a batch still in flight is stale when it comes.
    w.night()
    assert w.available("v1") == {"A": 0, "B": 100}
    if w.stations["A"].in_flight:
        assert not w.arrive_late("A")
    w.check_safe()


def test_offline_station_keeps_its_allowance_and_nobody_else_gets_it():
    w = World(("A", "B", "C"))
    w.earn("A", "v1", 100)
    w.night()
    assert w.available("v1") == {"A": 100, "B": 0, "C": 0}
    w.earn("B", "v1", 10)  # v1 is now last active at B
    night = w.night(pulled={"B", "C"})  # A's pull fails
    assert night["balance"] == {"v1": 110} and night["target"] == {"v1": "B"}
    assert "A" not in night["first"]
    assert w.available("v1") == {"A": 100, "B": 10, "C": 0}  # B: its own 10 only
    assert w.spend("A", "v1", 100)
    w.check_safe()


def test_late_older_batch_is_stale():
    w = World()
    w.earn("A", "v1", 100)
    w.night(outcome=lambda s, phase: "late")
    w.night()
    assert w.available("v1") == {"A": 100, "B": 0}
    while w.stations["A"].in_flight:
        assert not w.arrive_late("A")
    assert w.available("v1") == {"A": 100, "B": 0}


def test_a_decrease_that_may_not_have_arrived_keeps_the_old_allowance_counted():
    """Only the newest batch as a candidate would count A at 0 here and give B A's 100."""
    w = World()
    w.earn("A", "v1", 100)
    w.night()
    w.visit("B", "v1")
    w.night(outcome=lambda s, phase: "lost" if s == "A" else "ok")  # A -> 0 never arrives
    night = w.night(pulled={"B"})  # A offline: still has its 100
    assert night["claim"]["A"] == {"v1": 100} and night["ups"] == {}
    assert w.available("v1") == {"A": 100, "B": 0}
    w.check_safe()


def test_a_top_up_whose_answer_was_lost_counts_as_in_force():
    """Only the newest known batch as a candidate would count B at 0 here and give A B's 100."""
    w = World()
    w.earn("A", "v1", 100)
    w.visit("B", "v1")
    w.night(outcome=lambda s, phase: "answer_lost" if phase == 2 else "ok")  # B's top-up applied
    assert w.available("v1") == {"A": 0, "B": 100}
    w.visit("A", "v1")
    night = w.night(pulled={"A"})  # B offline
    assert night["claim"]["B"] == {"v1": 100} and night["ups"] == {}
    assert w.available("v1") == {"A": 0, "B": 100}
    w.check_safe()


# --- BUG: the escrow inequality holds, the balance still goes below zero ---------------------------

def spend_between_pull_and_push(guard: bool) -> World:
    """Spent at B after the district's pull of B, before B's batch: B's lower allowance arrives with
    a mark before the spend, B's available goes to -100, and the top-up gives A the same 100."""
    w = World(guard=guard)
    w.earn("B", "v1", 100)
    w.pull("B")
    w.visit("A", "v1")  # v1 last active at A: A should get the balance
    w.pull("A")
    assert w.spend("B", "v1", 100)  # B has no batch yet: its own 100 are available there
    night = w.push()  # every delivery ok
    assert night["balance"] == {"v1": 100} and night["target"] == {"v1": "A"}
    return w  # no guard: available A 100, B -100; balance 0


def late_batch_acknowledged_on_retry(guard: bool) -> World:
    """A's lower batch arrives late, after a spend at A past its mark; a retry acknowledges it; the
    next night A's pull fails, so the district counts A's claim as 0 and gives B everything."""
    w = World(guard=guard)
    w.earn("A", "v1", 100)
    w.night()  # A: 100
    w.visit("B", "v1")
    night = w.night(outcome=lambda s, phase: "late" if s == "A" else "ok")  # A -> 0, in flight
    assert night["ups"] == {}
    assert w.spend("A", "v1", 50)  # A's 100 are still in force
    w.arrive_late("A")  # no guard: A = 0 + (-50) since the mark
    w.retry("A", max(w.district["A"].sent))
    night = w.night(pulled={"B"})  # G = 100 (A's spend not pulled)
    assert night["balance"] == {"v1": 100}
    return w  # no guard: claim A 0 -> B 100; available A -50, B 100; balance 50


SCENARIOS = [spend_between_pull_and_push, late_batch_acknowledged_on_retry]


def spend_everything(w: World) -> None:
    for s, a in w.available("v1").items():
        if a > 0:
            assert w.spend(s, "v1", a)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_without_the_stations_refusal_the_balance_would_go_below_zero(scenario):
    """Why kiosk/inbox.py refuses an overdrawing batch: allocate.py's invariant alone allows this."""
    w = scenario(guard=False)
    w.check_escrow()  # allocate.py's invariant holds: A 100 + B -100 <= 0 / A -50 + B 100 <= 50 ...
    spend_everything(w)  # ... but the stations would let them spend 100 of a balance of 0 / 50:
    assert w.balance("v1") < 0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_balance_never_below_zero_when_the_station_refuses_such_a_batch(scenario):
    w = scenario(guard=True)
    w.check_safe()
    spend_everything(w)
    w.check_safe()
