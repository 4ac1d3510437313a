"""Ties between layers' choices: by option index, or by an option attribute (keyed ties).

Two kinds of tie constrain an allocation (``solve_allocation(..., ties=[...])``):

* an **index tie** -- a plain group of layers (indices or names): every member takes the same
  option *index* (``choice[a] == choice[b]``);
* a **keyed tie** -- ``Tie(layers, key)`` with ``key`` one hashable value per option (length
  K), e.g. each option's ``act_bits``: every member takes an option with the same *key*
  (``key[choice[a]] == key[choice[b]]``), the options themselves may differ. HAWQ-V3 ties the
  activation width of layers that read the same tensor this way: their weights may differ,
  their input quantization cannot. ``Tie(layers)`` (no key) is an index tie;
  ``Tie.by(layers, options, attr)`` builds the key from an attribute (or a callable) of each
  `Option`.

Index ties that share a layer are merged (as before). Every tie, keyed or not, couples its
members into one **component** (the partition `Problem.groups`).

Feasibility. A tie removes a member's option ``k`` when some other member has no feasible
option with key ``key[k]``; this is repeated until nothing changes (overlapping ties), and a tie
whose members share no feasible key is a one-line `AllocationError`.

Solvers. The MILP adds, per keyed tie, per consecutive pair of members ``a, b`` and per key
value ``v``: ``sum_{k: key[k]=v} x[a,k] = sum_{k: key[k]=v} x[b,k]`` (exact: one option per
layer). The greedy and the DP see a component as one super-layer whose options are the joint
choices of its members that satisfy all its ties; they are enumerated member by member, keeping
per partial state (the key value each open tie has fixed) only the choices not dominated in
(cost of the budgeted resource, summed omega) -- a dominated partial choice is never part of an
optimum with one budget, so this is exact. `joint_table` does it; a component with only index
ties keeps the old fast path (K options, members' omega and costs summed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from quant.allocate.allocation import AllocationError

MAX_JOINT = 200_000  # partial joint choices kept per component before giving up (use the MILP)


def _plain(v: Any) -> Hashable:
    """numpy scalars -> Python values, so keys compare and hash as the user expects."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return tuple(_plain(x) for x in v)
    return v


@dataclass(frozen=True)
class Tie:
    """Layers (indices or names) that must choose options with equal ``key``.

    ``key``: one hashable value per option (length K); None = the option index (an index tie).
    """

    layers: tuple[Any, ...]
    key: tuple[Hashable, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
            raise AllocationError(f"Tie: layers is {self.layers!r}; expected a sequence of layer "
                                  f"indices or names")
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.key is not None:
            if isinstance(self.key, (str, bytes)) or not hasattr(self.key, "__iter__"):
                raise AllocationError(f"Tie: key is {self.key!r}; expected one hashable value per "
                                      f"option")
            key = tuple(_plain(v) for v in self.key)
            for v in key:
                try:
                    hash(v)
                except TypeError:
                    raise AllocationError(f"Tie: key value {v!r} is not hashable; expected one "
                                          f"hashable value per option") from None
            object.__setattr__(self, "key", key)

    @classmethod
    def by(cls, layers: Sequence[Any], options: Sequence[Any],
           attr: str | Callable[[Any], Hashable]) -> "Tie":
        """Keyed tie on an attribute name (``"act_bits"``) or a callable of each option, e.g.
        ``lambda o: (o.act_format, o.act_bits)``."""
        get = attr if callable(attr) else (lambda o: getattr(o, attr))
        return cls(tuple(layers), tuple(get(o) for o in options))


def parse_ties(ties: Any, names: Sequence[str], K: int) -> tuple[list[list[int]], list[Tie]]:
    """(index groups as member lists, keyed ties with integer members) from the user's ``ties``;
    one-line `AllocationError` naming ``ties[i]`` on bad input."""
    L = len(names)
    index = {n: l for l, n in enumerate(names)}
    if isinstance(ties, (str, bytes)) or isinstance(ties, Tie):
        raise AllocationError("ties: expected a sequence of groups of layer indices or names "
                              "(or quant.allocate.ties.Tie objects)")
    plain: list[list[int]] = []
    keyed: list[Tie] = []
    for gi, group in enumerate(ties):
        key = None
        if isinstance(group, Tie):
            group, key = group.layers, group.key
        if isinstance(group, (str, bytes)) or not hasattr(group, "__iter__"):
            raise AllocationError(f"ties[{gi}] is {group!r}; expected a sequence of layer indices or names")
        members = []
        for m in group:
            if isinstance(m, str):
                if m not in index:
                    raise AllocationError(f"ties[{gi}]: unknown layer name {m!r}; expected one of "
                                          f"layer_names")
                members.append(index[m])
            elif isinstance(m, (int, np.integer)) and not isinstance(m, bool):
                if not 0 <= m < L:
                    raise AllocationError(f"ties[{gi}]: layer index {m} out of range; expected 0..{L - 1}")
                members.append(int(m))
            else:
                raise AllocationError(f"ties[{gi}]: {m!r}; expected a layer index (int) or name (str)")
        members = list(dict.fromkeys(members))  # a layer named twice counts once
        if key is None:
            plain.append(members)
            continue
        if len(key) != K:
            raise AllocationError(f"ties[{gi}]: key has {len(key)} values; expected {K}, one per option")
        if len(members) > 1:
            keyed.append(Tie(tuple(members), key))
    return plain, keyed


def union_groups(L: int, member_lists: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """The partition of ``range(L)`` that the member lists connect (union-find), groups ordered
    by their first layer."""
    parent = list(range(L))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in member_lists:
        for m in members[1:]:
            parent[find(m)] = find(members[0])
    by_root: dict[int, list[int]] = {}
    for l in range(L):
        by_root.setdefault(find(l), []).append(l)
    return tuple(sorted((tuple(g) for g in by_root.values()), key=lambda g: g[0]))


def prune_keyed(feasible: np.ndarray, keyed: Sequence[Tie], lname: Callable[[int], str]) -> bool:
    """Remove, in place, options a keyed tie rules out (see the module docstring); True if
    anything changed. Raises `AllocationError` for a tie without a common feasible key."""
    changed = False
    for t in keyed:
        members = list(t.layers)
        keys = t.key
        common = None
        for l in members:
            have = {keys[k] for k in np.flatnonzero(feasible[l]).tolist()}
            common = have if common is None else common & have
        if not common:
            who = ", ".join(lname(l) for l in members)
            raise AllocationError(f"ties: the keyed-tied {who} have no key value feasible for all "
                                  f"of them; expected a shared key among their finite options")
        ok = np.array([v in common for v in t.key])
        for l in members:
            new = feasible[l] & ok
            if not np.array_equal(new, feasible[l]):
                feasible[l] = new
                changed = True
    return changed


@dataclass(frozen=True)
class JointTable:
    """A component's super-layer options: ``w[j]``, ``c[j]`` and the members' choices."""

    w: np.ndarray  # (J,)
    c: np.ndarray  # (J,)
    choices: tuple[tuple[int, ...], ...]  # (J,) per member (in the component's order)


_Entry = tuple[float, float, tuple[int, ...]]  # (cost, omega, members' choices)


def _pareto(entries: list[_Entry]) -> list[_Entry]:
    entries.sort(key=lambda e: (e[0], e[1]))
    out = []
    best = np.inf
    for e in entries:
        if e[1] < best:
            out.append(e)
            best = e[1]
    return out


def joint_table(group: Sequence[int], ties: Sequence[Tie], w: np.ndarray, c: np.ndarray,
                feasible: np.ndarray) -> JointTable:
    """Joint choices of ``group``'s members satisfying ``ties`` (their members all in ``group``;
    an index tie has ``key=None``), Pareto-pruned in (``c``, ``w``) -- see the module docstring.
    ``w``, ``c``: (L, K) omega and the budgeted cost."""
    K = w.shape[1]
    ident = tuple(range(K))
    keys = [t.key if t.key is not None else ident for t in ties]
    last = {}
    for ti, t in enumerate(ties):
        last[ti] = max(group.index(m) for m in t.layers)
    touching = {m: [ti for ti, t in enumerate(ties) if m in t.layers] for m in group}
    done = object()
    states: dict[tuple, list[_Entry]] = {
        tuple([None] * len(ties)): [(0.0, 0.0, ())]}
    for pos, m in enumerate(group):
        new: dict[tuple, list[_Entry]] = {}
        opts = np.flatnonzero(feasible[m]).tolist()
        for state, entries in states.items():
            for k in opts:
                st = list(state)
                ok = True
                for ti in touching[m]:
                    v = keys[ti][k]
                    if st[ti] is not None and st[ti] != v:
                        ok = False
                        break
                    st[ti] = done if last[ti] == pos else v
                if not ok:
                    continue
                bucket = new.setdefault(tuple(st), [])
                ck, wk = float(c[m, k]), float(w[m, k])
                bucket.extend((e[0] + ck, e[1] + wk, e[2] + (k,)) for e in entries)
        states = {s: _pareto(e) for s, e in new.items()}
        if sum(len(e) for e in states.values()) > MAX_JOINT:
            raise AllocationError(f"ties: the tied layers {list(group)} have more than {MAX_JOINT} "
                                  f"joint choices; expected fewer, or method='milp'")
    final = _pareto([e for entries in states.values() for e in entries])
    if not final:
        raise AllocationError(f"ties: the tied layers {list(group)} have no joint choice satisfying "
                              f"all their ties; expected compatible ties")
    return JointTable(np.array([e[1] for e in final]), np.array([e[0] for e in final]),
                      tuple(e[2] for e in final))


def satisfied(choice: Sequence[int], ties: Sequence[Tie]) -> bool:
    """Whether a per-layer ``choice`` satisfies every tie (index ties: ``key=None``)."""
    for t in ties:
        vals = {(choice[l] if t.key is None else t.key[choice[l]]) for l in t.layers}
        if len(vals) > 1:
            return False
    return True
