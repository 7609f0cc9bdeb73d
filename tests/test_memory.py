"""The deployed int8 graph in less TFLM arena (docs/memory.md).

No persistent BATCH_MATMUL copies, last layer on token 0, names stripped, offline memory plan,
the arena budget and the board rule, on the tiny preset trained a few steps (tests/conftest.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from embbert.core.errors import EmbBertError


@pytest.fixture(scope="module")
def graphs(tiny_run_dir):
    """The tiny run's QAT model as the plain graph (every deploy-form field off) and as the default form."""
    from embbert.core.config import EmbBertConfig
    from embbert.keras_model.model import load_model
    from embbert.keras_model.forms import DEFAULT, PLAIN
    from embbert.tflite.convert import build_int8
    from embbert.datasets.pipeline import encoded_split

    config = EmbBertConfig.load(tiny_run_dir)
    tok, seg, _, _ = encoded_split(tiny_run_dir, config, "train", 60)

    def rep():
        for i in range(tok.shape[0]):
            yield {"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}

    qat = load_model(tiny_run_dir, qat=True, config=config)
    from embbert.tflite.probe import minimal_arena

    previous, prev_info = build_int8(qat, config, rep, PLAIN)
    optimised, info = build_int8(qat, config, rep, DEFAULT)
    return {"previous": previous, "optimised": optimised, "info": info, "prev_info": prev_info, "run": tiny_run_dir,
            "config": config, "min_previous": minimal_arena(previous), "min_optimised": minimal_arena(optimised)}


def test_no_batch_matmul_keeps_a_transposed_copy(graphs):
    from embbert.tflite.arena import persistent_copies
    from embbert.tflite.graph import batch_matmul_flags, read_graph

    before = batch_matmul_flags(graphs["previous"])
    assert any(not adj_y for _, adj_y in before.values())  # the previous graph had them: the check can fail
    flags = batch_matmul_flags(graphs["optimised"])
    assert len(flags) == 2 * graphs["config"].model.layers
    assert all(adj_y and not adj_x for adj_x, adj_y in flags.values()), flags
    assert persistent_copies(read_graph(graphs["optimised"])) == []


def test_optimised_graph_agrees_with_previous(graphs):
    from embbert.tflite.check import tflm_predict
    from embbert.datasets.pipeline import encoded_split

    tok, seg, _, _ = encoded_split(graphs["run"], graphs["config"], "test", 300)
    a = tflm_predict(graphs["previous"], tok, seg)
    b = tflm_predict(graphs["optimised"], tok, seg)
    assert a.shape == b.shape == (300, 3)
    assert np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.99
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # same maths, same scales


@pytest.mark.slow  # one more conversion with two exact-arena bisections; the default suite stays under 15 minutes
def test_position_constant_replaces_the_position_path(graphs):
    """The position lever: one FULLY_CONNECTED less, fewer MACs, a valid TFLM graph that agrees with the default."""
    from embbert.datasets.pipeline import encoded_split
    from embbert.keras_model.forms import DEFAULT
    from embbert.keras_model.model import load_model
    from embbert.tflite.check import tflm_predict
    from embbert.tflite.convert import build_int8
    from embbert.tflite.graph import macs, read_graph

    config = graphs["config"]
    tok, seg, _, _ = encoded_split(graphs["run"], config, "train", 60)

    def rep():
        for i in range(tok.shape[0]):
            yield {"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}

    form = DEFAULT.but(constant_positions=True)
    assert not form.exact and DEFAULT.exact
    data, info = build_int8(load_model(graphs["run"], qat=True, config=config), config, rep, form)
    assert info["options"]["constant_positions"] is True
    fc = [sum(op.name == "FULLY_CONNECTED" for op in read_graph(d).ops) for d in (graphs["optimised"], data)]
    assert fc[1] == fc[0] - 1
    assert macs(read_graph(data))["total"] < macs(read_graph(graphs["optimised"]))["total"]
    t, s, _, _ = encoded_split(graphs["run"], config, "test", 300)
    a, b = tflm_predict(graphs["optimised"], t, s), tflm_predict(data, t, s)
    assert np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.95


def test_optimised_graph_is_smaller_and_cheaper(graphs):
    from embbert.tflite.graph import macs, read_graph

    prev, opt = graphs["previous"], graphs["optimised"]
    assert len(opt) < len(prev)  # names stripped
    assert macs(read_graph(opt))["total"] < macs(read_graph(prev))["total"]  # last layer on token 0
    assert graphs["min_optimised"] < graphs["min_previous"]


def test_names_stripped_but_kept_for_messages(graphs):
    from embbert.tflite.graph import read_graph

    g = read_graph(graphs["optimised"])
    io = set(g.inputs) | set(g.outputs)
    assert all(t.name == "" for t in g.tensors if t.index not in io)
    assert g.input_index("token_ids") != g.input_index("segment_ids")
    names = graphs["info"]["names"]
    assert len(names) == len(g.tensors) and any("encoder_1" in n for n in names.values())


def test_repacked_model_keeps_buffers_aligned(graphs):
    from embbert.tflite.graph import schema

    data = graphs["optimised"]
    model = schema().Model.GetRootAsModel(data, 0)
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength() >= 16:
            offset = buf._tab.Vector(buf._tab.Offset(4))
            assert offset % 16 == 0, (i, offset)


def test_first_fit_planner_and_offline_plan():
    from embbert.tflite.planner import PlanBuffer, best_plan, live_lower_bound, place, tflm_greedy_order

    # worked by hand with TFLM's rule: D at 0, A at 0 (not alive with D), B above both at 96, C at 160
    bufs = [PlanBuffer(0, 64, 0, 1), PlanBuffer(1, 64, 1, 3), PlanBuffer(2, 32, 2, 3), PlanBuffer(3, 96, 3, 4)]
    offsets, greedy = place(bufs, tflm_greedy_order(bufs))
    assert offsets == {3: 0, 0: 0, 1: 96, 2: 160} and greedy == 192 == live_lower_bound(bufs)
    offsets, peak, _ = best_plan(bufs)
    assert peak == 192
    for a in bufs:  # no two buffers alive at the same time share a byte
        for b in bufs:
            if a.tensor < b.tensor and not (a.first > b.last or b.first > a.last):
                oa, ob = offsets[a.tensor], offsets[b.tensor]
                assert oa + a.size <= ob or ob + b.size <= oa


def test_offline_plan_is_what_tflm_uses(graphs):
    from embbert.tflite.check import tflm_predict
    from embbert.tflite.convert import OFFLINE_PLAN_METADATA, finalize_model
    from embbert.datasets.pipeline import encoded_split
    from embbert.tflite.graph import read_graph, schema
    from embbert.tflite.planner import plan_buffers
    from embbert.tflite.probe import minimal_arena, recorded_allocations

    data, info = finalize_model(graphs["previous"], plan=True, strip_names=False)
    model = schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    meta = [m for m in model.metadata if m.name.decode() == OFFLINE_PLAN_METADATA]
    assert len(meta) == 1
    words = np.frombuffer(bytes(model.buffers[meta[0].buffer].data), "<i4")
    assert words[0] == 0 and words[1] == 0 and words[2] == len(model.subgraphs[0].tensors) == len(words) - 3
    n = minimal_arena(data)
    shared = recorded_allocations(data, n)["non_persistent_bytes"]
    assert info["plan"]["planned_bytes"] <= shared <= info["plan"]["planned_bytes"] + 1024  # + kernels' scratch
    # a deliberately wasteful plan (no reuse at all) is taken as given: TFLM follows the metadata
    g = read_graph(graphs["previous"])
    bufs = plan_buffers(g)
    offsets, end = [-1] * len(g.tensors), 0
    for b in bufs:
        offsets[b.tensor], end = end, end + b.size
    wasteful, _ = finalize_model(graphs["previous"], plan=True, strip_names=False, offsets=offsets)
    m = minimal_arena(wasteful)
    assert recorded_allocations(wasteful, m)["non_persistent_bytes"] >= end > shared
    tok, seg, _, _ = encoded_split(graphs["run"], graphs["config"], "test", 20)
    ref = tflm_predict(graphs["previous"], tok, seg)
    assert np.array_equal(tflm_predict(data, tok, seg), ref) and np.array_equal(tflm_predict(wasteful, tok, seg), ref)


def test_arena_exact_on_the_optimised_graph(graphs):
    from embbert.tflite.probe import ArenaProbe, minimal_arena

    n = graphs["min_optimised"]
    assert n == minimal_arena(graphs["optimised"]) and n % 16 == 0
    with ArenaProbe(graphs["optimised"]) as probe:
        assert probe.works(n) and not probe.works(n - 16)


def test_budget_keeps_fewest_macs_that_fit_or_names_the_smallest(graphs):
    from embbert.tflite.convert import _budget_choice

    cands = [(graphs["previous"], dict(graphs["prev_info"])), (graphs["optimised"], dict(graphs["info"]))]
    data, info = _budget_choice(cands, 10 * graphs["min_previous"])
    assert data == graphs["optimised"]  # both fit: the one with fewer MACs
    data, info = _budget_choice(cands, graphs["min_optimised"] + info["arena"]["recommended_arena_bytes"]
                                - info["arena"]["min_arena_bytes"])
    assert data == graphs["optimised"] and info["arena"]["recommended_arena_bytes"] == info["arena"]["budget_bytes"]
    with pytest.raises(EmbBertError, match=r"no graph fits an arena budget of 4096 bytes: the smallest reachable "
                                           r"recommended arena is \d+ bytes") as exc:
        _budget_choice(cands, 4096)
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_impossible_budget_is_one_line_and_writes_nothing(tiny_run_dir, capsys):
    from embbert.cli import main

    model = tiny_run_dir / "model_int8.tflite"
    before = model.read_bytes() if model.exists() else None
    assert main(["convert", str(tiny_run_dir), "--arena-budget", "4096", "--max-calibration", "20"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("embbert: error: no graph fits an arena budget of 4096 bytes") and "\n" not in err
    assert "smallest reachable recommended arena is" in err
    assert (model.read_bytes() if model.exists() else None) == before


def test_board_rule_and_flash_sum_fixed_numbers():
    from embbert.tflite.arena import TFLM_RUNTIME_FLASH_BYTES, TFLM_RUNTIME_RAM_BYTES, arena_budget_for, board_fit

    # measured in the linked Nano 33 BLE firmware (docs/arduino.md)
    assert (TFLM_RUNTIME_FLASH_BYTES, TFLM_RUNTIME_RAM_BYTES) == (130_808, 1_117)
    assert arena_budget_for("nano33ble") == 262_144 - 43_920 - 1_117  # the empty sketch's static RAM, TFLM's
    assert arena_budget_for("esp32") == 262_144 - 1_117 and arena_budget_for("esp32s3") == 393_216 - 1_117
    with pytest.raises(EmbBertError, match="unknown board"):
        arena_budget_for("uno")
    rows = {b["key"]: b for b in board_fit(400_000, 190_000, 50_000)}
    nano = rows["nano33ble"]
    assert nano["flash_needed_bytes"] == 400_000 + 50_000 + 130_808
    assert nano["flash_available_bytes"] == 983_040 - 95_204 and nano["flash_headroom_bytes"] == 307_028
    assert nano["ram_headroom_bytes"] == 262_144 - 43_920 - 190_000 - 1_117 and nano["fits"]
    budget = arena_budget_for("nano33ble")
    assert {b["key"]: b for b in board_fit(400_000, budget, 50_000)}["nano33ble"]["fits"]
    assert not {b["key"]: b for b in board_fit(400_000, budget + 16, 50_000)}["nano33ble"]["fits"]  # 16 B over
    assert not {b["key"]: b for b in board_fit(900_000, 1_000, 0)}["nano33ble"]["fits"]  # flash, not RAM


def test_margin_is_the_cmsis_nn_scratch(graphs):
    from embbert.tflite.arena import cmsis_nn_scratch, margin_for
    from embbert.tflite.graph import read_graph

    m = graphs["config"].model
    prev = max(s["bytes"] for s in cmsis_nn_scratch(read_graph(graphs["previous"])))
    assert prev == 2 * m.hidden * (2 * m.kernel - 1)  # SAME kernel with k-1 zero taps
    g = read_graph(graphs["optimised"])
    assert max(s["bytes"] for s in cmsis_nn_scratch(g)) == 2 * m.hidden * m.kernel  # the k trained taps only
    assert margin_for(10_000, g) == 2 * m.hidden * m.kernel


def test_deploy_options_leave_the_training_graph_alone(tiny_run_dir):
    """Float Keras: every deploy form computes the logits of the training graph; a form is checked when made."""
    from embbert.core.config import EmbBertConfig
    from embbert.keras_model.forms import DEFAULT, PLAIN, DeployForm
    from embbert.keras_model.model import build_deploy_model, load_model
    from embbert.datasets.pipeline import encoded_split

    config = EmbBertConfig.load(tiny_run_dir)
    model = load_model(tiny_run_dir, config=config)
    tok, seg, _, _ = encoded_split(tiny_run_dir, config, "test", 8)
    ref = model.predict({"token_ids": tok, "segment_ids": seg}, verbose=0)
    for form in (PLAIN, DEFAULT, DEFAULT.but(causal_valid=False), DEFAULT.but(query_blocks=3),
                 DEFAULT.but(constant_positions=True)):
        dm = build_deploy_model(model, config, form=form)
        out = np.concatenate([dm({"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}).numpy() for i in range(8)])
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="query_blocks"):
        DeployForm(query_blocks=0)
    with pytest.raises(ValueError, match="first_token_only"):
        DeployForm(first_token_only=1)
    # without transposed keys an encoder layer runs its training form: the token-0 option does not reach it
    assert not PLAIN.but(first_token_only=True).layer_form(last=True).first_token_only
    assert DEFAULT.layer_form(last=True).first_token_only and not DEFAULT.layer_form(last=False).first_token_only
    assert json.loads(config.to_json())["max_length"] == config.max_length


def test_causal_padding_is_a_pad_without_constant(graphs):
    """The VALID convolution's k-1 zero steps come from a PAD (filled with the int8 zero point), on
    the 4-D view: no CONCATENATION with a zero constant in flash, no RESHAPE of the padded tensor."""
    from embbert.tflite.graph import read_graph

    g = read_graph(graphs["optimised"])
    names = [op.name for op in g.ops]
    assert names.count("PAD") == graphs["config"].model.layers and "CONCATENATION" not in names
    k = graphs["config"].model.kernel
    for op in g.ops:
        if op.name == "PAD":
            src, dst = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
            assert len(src.shape) == 4 and dst.shape[2] == src.shape[2] + k - 1
            assert dst.zero_point == src.zero_point and dst.scale == src.scale  # the fill is exactly 0.0
            (reader,) = [o for o in g.ops if op.outputs[0] in o.inputs]
            assert reader.name == "DEPTHWISE_CONV_2D"


def test_schedule_moves_an_early_operator_to_its_reader():
    from embbert.tflite.graph import Graph, Op, Tensor
    from embbert.tflite.planner import live_lower_bound, plan_buffers, schedule_ops

    def t(i, n, constant=False):
        return Tensor(i, f"t{i}", "int8", [n], [n], constant)

    # op0 reads only a constant (as the converter's first operators do) and is read by the last op
    tensors = [t(0, 96), t(1, 1024, True), t(2, 1024), t(3, 1024), t(4, 1024), t(5, 96), t(6, 96)]
    ops = [Op(0, "FULLY_CONNECTED", False, [1], [2]), Op(1, "FULLY_CONNECTED", False, [0], [3]),
           Op(2, "MUL", False, [3], [4]), Op(3, "MUL", False, [4], [5]), Op(4, "ADD", False, [2, 5], [6])]
    g = Graph(ops, tensors, [0], [6])
    assert live_lower_bound(plan_buffers(g)) == 3072
    order, info = schedule_ops(g)
    assert order == [1, 2, 3, 0, 4]
    assert info["live_lower_bound_before"] == 3072 and info["live_lower_bound_after"] == 2048
    for i, op in enumerate(order):  # still a topological order
        producers = {p for p in order[:i] for out in ops[p].outputs if out in ops[op].inputs}
        assert producers == {p for p in range(5) for out in ops[p].outputs if out in ops[op].inputs}


def test_reordered_graph_gives_the_same_logits(graphs):
    """`reorder_ops` on the previous graph: fewer live bytes, logits bit-identical in TFLM."""
    from embbert.datasets.pipeline import encoded_split
    from embbert.tflite.check import tflm_predict
    from embbert.tflite.convert import reorder_ops
    from embbert.tflite.graph import read_graph

    data, info = reorder_ops(graphs["previous"])
    assert info["written"] and info["live_lower_bound_after"] < info["live_lower_bound_before"]
    before, after = read_graph(graphs["previous"]), read_graph(data)
    assert [o.name for o in before.ops] != [o.name for o in after.ops]
    assert sorted(o.name for o in before.ops) == sorted(o.name for o in after.ops)
    tok, seg, _, _ = encoded_split(graphs["run"], graphs["config"], "test", 100)
    assert np.array_equal(tflm_predict(graphs["previous"], tok, seg), tflm_predict(data, tok, seg))
    assert graphs["info"]["schedule"]["moves"] >= 0 and "live_lower_bound_after" in graphs["info"]["schedule"]


def test_pointer_savings_match_tflm_structs_on_the_host(graphs):
    """The derived 32-bit saving counts TFLM's TfLiteEvalTensor (24 B on the 64-bit host) per tensor and its
    NodeAndRegistration (64 B) per operator: the RecordingMicroAllocator must record exactly those arrays, and
    the 32-bit sizes are half of them (arena.py's module doc)."""
    from embbert.tflite.arena import EVAL_TENSOR_BYTES, NODE_AND_REGISTRATION_BYTES, pointer_savings, recommended_arena
    from embbert.tflite.probe import recorded_allocations
    from embbert.tflite.graph import read_graph

    data = graphs["optimised"]
    g = read_graph(data)
    cats = recorded_allocations(data, graphs["min_optimised"])["categories"]
    assert cats["TfLiteEvalTensor data"]["bytes"] == EVAL_TENSOR_BYTES[64] * len(g.tensors)
    assert cats["NodeAndRegistration struct"]["bytes"] == NODE_AND_REGISTRATION_BYTES[64] * len(g.ops)
    saving = pointer_savings(g)
    assert saving == len(g.tensors) * 12 + len(g.ops) * 32
    assert recommended_arena(graphs["min_optimised"], g) < graphs["min_optimised"] - saving + 16 * 1024
