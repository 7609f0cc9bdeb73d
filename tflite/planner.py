"""TFLM's arena planning, re-implemented to measure and to improve the plan of a graph.

From TFLM's micro_allocation_info.cc (lifetimes) and greedy_memory_planner.cc (first-fit in
size order), read with the search tools: `plan_buffers` gives the tensors TFLM plans and their
lifetimes, `place` is the first-fit rule, `tflm_greedy_order` TFLM's own order, `best_plan`
the smallest of several orders (written into the model as TFLM's offline memory plan by
`convert.finalize_model`). Matched TFLM's recorded arena to the byte (docs/memory.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import Graph

PLAN_ALIGN = 16  # MicroArenaBufferAlignment(): every planned buffer size is rounded up to it


@dataclass
class PlanBuffer:
    tensor: int
    size: int  # bytes, rounded up to PLAN_ALIGN
    first: int  # allocation scope of creation (inputs 0, the output of operator i: i + 1)
    last: int  # last allocation scope that reads (or writes) it


def _buffers_in_order(graph: Graph, order: list[int]) -> list[PlanBuffer]:
    """`plan_buffers` of the graph with its operators run in `order` (a permutation of op indices)."""
    return plan_buffers(Graph([graph.ops[i] for i in order], graph.tensors, graph.inputs, graph.outputs))


def _area(buffers: list[PlanBuffer]) -> int:
    return sum(b.size * (b.last - b.first + 1) for b in buffers)


def schedule_ops(graph: Graph, passes: int = 3) -> tuple[list[int], dict[str, Any]]:
    """An order of the operators that TFLM can run in less arena: same operators, same tensors, so
    the same outputs bit for bit, another topological order. The converter puts operators that read
    only constants or the model inputs (the position path, the segment gather) first, so their
    outputs stay alive through everything before their first reader. Each operator, last to first,
    is moved to just before its earliest reader when that does not raise the live-bytes lower bound
    and shortens the summed lifetimes (bytes x scopes); repeated `passes` times. Operators that
    write a graph output stay where they are. Returns (order, info)."""
    n = len(graph.ops)
    producer = {t: i for i, op in enumerate(graph.ops) for t in op.outputs}
    readers: dict[int, set[int]] = {i: set() for i in range(n)}
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            if t in producer:
                readers[producer[t]].add(i)
    outputs = set(graph.outputs)
    order = list(range(n))
    base = _buffers_in_order(graph, order)
    bound, area = live_lower_bound(base), _area(base)
    before = bound
    moved = 0
    for _ in range(passes):
        changed = False
        for op in reversed(list(order)):
            if not readers[op] or outputs & set(graph.ops[op].outputs):
                continue
            pos = order.index(op)
            target = min(order.index(r) for r in readers[op]) - 1  # just before its first reader
            if target <= pos:
                continue
            trial = order[:pos] + order[pos + 1:target + 1] + [op] + order[target + 1:]
            bufs = _buffers_in_order(graph, trial)
            b, a = live_lower_bound(bufs), _area(bufs)
            if b <= bound and a < area:
                order, bound, area, changed = trial, b, a, True
                moved += 1
        if not changed:
            break
    return order, {"live_lower_bound_before": before, "live_lower_bound_after": bound, "moves": moved}


def plan_buffers(graph: Graph) -> list[PlanBuffer]:
    """The tensors TFLM places in the shared (non-persistent) arena, with TFLM's lifetimes.

    As `AllocationInfoBuilder::MarkAllocationLifetimes`: inputs are created at scope 0, operator i
    runs in scope i + 1 (its outputs are created there, its inputs and outputs are used there),
    the graph outputs live to the last scope. Constant tensors and empty ones are not planned.
    A tensor is alive in [first, last]; two buffers whose ranges intersect never share bytes
    (an operator's output never overlaps its inputs)."""
    first: dict[int, int] = {i: 0 for i in graph.inputs}
    last: dict[int, int] = {}
    for i, op in enumerate(graph.ops):
        scope = i + 1
        for t in op.outputs:
            first.setdefault(t, scope)
        for t in op.inputs + op.outputs:
            if t >= 0:
                last[t] = scope
    end = len(graph.ops)
    for t in graph.outputs:
        last[t] = end
    out = []
    for t in graph.tensors:
        if t.constant or t.nbytes == 0 or t.index not in first or t.index not in last:
            continue
        size = -(-t.nbytes // PLAN_ALIGN) * PLAN_ALIGN
        out.append(PlanBuffer(t.index, size, first[t.index], last[t.index]))
    return out


def place(buffers: list[PlanBuffer], order: list[int]) -> tuple[dict[int, int], int]:
    """First-fit placement in the given order (TFLM's greedy rule): each buffer goes to the lowest
    offset where it overlaps, in bytes, no already placed buffer that is alive at the same time.
    Returns {tensor: offset} and the peak (bytes)."""
    placed: list[tuple[int, int, PlanBuffer]] = []  # (offset, end, buffer), sorted by offset
    offsets: dict[int, int] = {}
    peak = 0
    for k in order:
        b = buffers[k]
        cand = 0
        for off, end, other in placed:
            if other.first > b.last or b.first > other.last:
                continue
            if off - cand >= b.size:
                break
            cand = max(cand, end)
        offsets[b.tensor] = cand
        placed.append((cand, cand + b.size, b))
        placed.sort(key=lambda e: e[0])
        peak = max(peak, cand + b.size)
    return offsets, peak


def tflm_greedy_order(buffers: list[PlanBuffer]) -> list[int]:
    """TFLM's own order: sizes descending, ties in tensor order (its bubble sort is stable)."""
    return sorted(range(len(buffers)), key=lambda k: (-buffers[k].size, buffers[k].tensor))


def live_lower_bound(buffers: list[PlanBuffer]) -> int:
    """No plan can use less: the largest sum of sizes alive at one scope."""
    if not buffers:
        return 0
    end = max(b.last for b in buffers)
    return max(sum(b.size for b in buffers if b.first <= s <= b.last) for s in range(end + 1))


def best_plan(buffers: list[PlanBuffer], tries: int = 64, seed: int = 0) -> tuple[dict[int, int], int, str]:
    """The smallest of several first-fit orders: TFLM's, size with lifetime tie-breaks, creation
    order, longest-lived first, and `tries` seeded random tie-breaks. (offsets, peak, rule)."""
    n = len(buffers)
    cands: list[tuple[str, list[int]]] = [
        ("TFLM greedy (size, tensor index)", tflm_greedy_order(buffers)),
        ("size, then earliest creation", sorted(range(n), key=lambda k: (-buffers[k].size, buffers[k].first))),
        ("size, then latest last use", sorted(range(n), key=lambda k: (-buffers[k].size, -buffers[k].last))),
        ("size x lifetime", sorted(range(n), key=lambda k: -buffers[k].size * (buffers[k].last - buffers[k].first + 1))),
        ("creation order", sorted(range(n), key=lambda k: (buffers[k].first, -buffers[k].size))),
        ("longest lifetime", sorted(range(n), key=lambda k: (-(buffers[k].last - buffers[k].first), -buffers[k].size))),
    ]
    rng = np.random.default_rng(seed)
    for i in range(tries):
        noise = rng.random(n)
        cands.append((f"size, random tie-break #{i}", sorted(range(n), key=lambda k: (-buffers[k].size, noise[k]))))
    best = None
    for rule, order in cands:
        offsets, peak = place(buffers, order)
        if best is None or peak < best[1]:
            best = (offsets, peak, rule)
    return best


def offline_plan(graph: Graph) -> tuple[list[int], dict[str, Any]]:
    """Offsets for TFLM's `OfflineMemoryAllocation` metadata (-1: planned by TFLM at run time)."""
    buffers = plan_buffers(graph)
    offsets, peak, rule = best_plan(buffers)
    _, greedy_peak = place(buffers, tflm_greedy_order(buffers))
    plan = [-1] * len(graph.tensors)
    for t, off in offsets.items():
        plan[t] = off
    return plan, {"planned_bytes": peak, "simulated_greedy_bytes": greedy_peak,
                  "live_lower_bound_bytes": live_lower_bound(buffers), "rule": rule, "buffers": len(buffers)}


__all__ = ["offline_plan", "schedule_ops", "PlanBuffer", "plan_buffers", "place", "best_plan", "tflm_greedy_order", "live_lower_bound", "PLAN_ALIGN"]
