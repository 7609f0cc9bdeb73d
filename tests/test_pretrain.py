"""MLM pretraining: packing, masking, learning on a generated corpus, resume, presets (issue 11)."""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from embbert.core.config import EmbBertConfig, TrainConfig
from embbert.core.errors import EmbBertError

CLS, MASK, SEP, PAD = 2, 3, 4, 0


def _encoded(n_lines=200, seed=0, lo=3, hi=40, vocab=300):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, vocab, rng.integers(lo, hi)).astype(np.int32) for _ in range(n_lines)]


def test_full_packing_keeps_every_token_and_pads_only_the_last_sequence():
    from embbert.keras_model.pretrain import pack_sequences, packing_stats

    enc, L = _encoded(), 32
    seqs = pack_sequences(enc, L, "full")
    assert seqs.shape[1] == L and (seqs[:, 0] == CLS).all()
    body = seqs[:, 1:].reshape(-1)
    body = body[body != PAD]
    expected = np.concatenate([np.append(e, SEP) for e in enc])
    np.testing.assert_array_equal(body, expected)  # the stream, in order, nothing lost
    assert (seqs[:-1] != PAD).all()  # padding only in the last sequence
    total = sum(len(e) + 1 for e in enc)
    assert len(seqs) == -(-total // (L - 1))
    stats = packing_stats(seqs)
    assert stats["padding_share"] < 1.0 / len(seqs)
    assert stats["tokens"] == total + len(seqs)


def test_line_packing_statistics():
    from embbert.keras_model.pretrain import pack_sequences, packing_stats

    enc, L = _encoded(), 32
    seqs = pack_sequences(enc, L, "lines")
    assert seqs.shape == (len(enc), L) and (seqs[:, 0] == CLS).all()
    kept = [min(len(e), L - 1) + 1 for e in enc]
    stats = packing_stats(seqs)
    assert stats["tokens"] == sum(kept)
    assert stats["padding_share"] == pytest.approx(1 - sum(kept) / (len(enc) * L))
    assert stats["padding_share"] > 0.3  # short lines: most of every sequence is padding
    with pytest.raises(EmbBertError):
        pack_sequences(enc, L, "nope")


def test_fixed_masks_follow_the_documented_rule():
    from embbert.keras_model.pretrain import fixed_masks, max_predictions_for, pack_sequences

    seqs = pack_sequences(_encoded(n_lines=3000, seed=1), 64, "full")
    x, ids, w = fixed_masks(seqs, 300, seed=0)
    n, P = ids.shape
    assert P == max_predictions_for(64) == 10
    sel = w > 0
    rows = np.repeat(np.arange(n)[:, None], P, 1)[sel]
    pos = x["mask_positions"][sel]
    assert not np.isin(seqs[rows, pos], [PAD, CLS, SEP]).any()  # specials never selected
    np.testing.assert_array_equal(ids[sel], seqs[rows, pos])  # labels are the original tokens
    candidates = (~np.isin(seqs, [PAD, CLS, SEP])).sum()
    assert sel.sum() / candidates == pytest.approx(0.15, abs=0.01)
    replaced = x["token_ids"][rows, pos]
    frac_mask = np.mean(replaced == MASK)
    frac_same = np.mean(replaced == seqs[rows, pos])
    assert frac_mask == pytest.approx(0.8, abs=0.02)
    assert frac_same == pytest.approx(0.1 + 0.1 / 300, abs=0.02)  # kept, plus random draws of the same id
    unmasked = np.ones_like(seqs, bool)
    unmasked[rows, pos] = False
    np.testing.assert_array_equal(x["token_ids"][unmasked], seqs[unmasked])


def test_dynamic_masks_of_the_training_pipeline():
    from embbert.keras_model.pretrain import mlm_dataset, pack_sequences

    seqs = pack_sequences(_encoded(n_lines=2000, seed=2), 64, "full")
    ds = mlm_dataset(seqs, 300, batch_size=64, seed=0)
    selected = candidates = 0
    first = None
    for x, ids, w in ds.take(4):
        x, ids, w = {k: v.numpy() for k, v in x.items()}, ids.numpy(), w.numpy()
        if first is None:
            first = x["mask_positions"].copy()
        sel = w > 0
        tok = x["token_ids"]
        # a label is never a special token; positions are inside the sequence
        assert not np.isin(ids[sel], [PAD, CLS, SEP]).any()
        assert (x["segment_ids"][:, 0] == 1).all()
        selected += sel.sum()
        candidates += (~np.isin(tok, [PAD, CLS, SEP])).sum()
    assert 0.12 < selected / candidates < 0.18
    again = next(iter(ds.take(1)))[0]["mask_positions"].numpy()
    assert first.shape == again.shape


def test_summary_slots_predict_words_of_the_window_from_token_0():
    """`--summary-slots`: extra slots at position 0 whose labels are words of the window, drawn in
    proportion to their count; never a special token; weight 0 for a window without words."""
    from embbert.keras_model.pretrain import max_predictions_for, mlm_dataset, pack_sequences, summary_targets

    rows = np.array([[CLS, 7, 7, 7, 9, SEP, PAD, PAD], [CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD]], np.int32)
    pos, ids, w = (t.numpy() for t in summary_targets(rows, 4000))
    assert (pos == 0).all() and set(np.unique(ids[0])) == {7, 9}
    assert 0.72 < np.mean(ids[0] == 7) < 0.78  # 3 of the 4 words
    assert (w[0] == 1).all() and (w[1] == 0).all()

    seqs = pack_sequences(_encoded(n_lines=500, seed=3), 32, "full")
    ds = mlm_dataset(seqs, 300, batch_size=16, seed=0, summary_slots=3)
    x, ids, w = next(iter(ds))
    x, ids, w = {k: v.numpy() for k, v in x.items()}, ids.numpy(), w.numpy()
    P = max_predictions_for(32)
    assert x["mask_positions"].shape == ids.shape == w.shape == (16, P + 3)
    assert (x["mask_positions"][:, P:] == 0).all() and (w[:, P:] == 1).all()
    assert not np.isin(ids[:, P:], [PAD, CLS, SEP, MASK]).any()


def _pattern_corpus(path, n_lines=600, seed=0):
    """Lines of counting words: every masked word is given by its neighbours."""
    rng = random.Random(seed)
    words = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(40)]
    with open(path, "w") as f:
        for _ in range(n_lines):
            start, n = rng.randrange(40), rng.randint(8, 20)
            f.write(" ".join(words[(start + j) % 40] for j in range(n)) + "\n")
    return path


@pytest.fixture(scope="module")
def pattern_run(tmp_path_factory):
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.keras_model.pretrain import PretrainSettings, pretrain

    root = tmp_path_factory.mktemp("pretrain_pattern")
    corpus = _pattern_corpus(root / "corpus.txt", n_lines=4000)
    tok = train_tokenizer([corpus], 300, root / "tokenizer")
    config = EmbBertConfig.create("nano", 32, tokenizer=str(tok), train=TrainConfig(batch_size=32, seed=0))
    settings = PretrainSettings(steps=300, learning_rate=3e-3, warmup_steps=30, eval_every=100, heldout_sequences=64)
    out = root / "out"
    summary = pretrain(config, [corpus], out, settings, verbose=0)
    return config, corpus, out, summary


def test_pretraining_beats_the_most_frequent_token_on_held_out_lines(pattern_run):
    config, _, out, summary = pattern_run
    assert summary["steps"] == 300
    assert summary["heldout"]["masked_positions"] > 60
    assert summary["heldout_accuracy"] > summary["baseline_accuracy"] + 0.3, summary
    for name in ("backbone.weights.h5", "pretrainer.weights.h5", "history.csv", "history.png", "pretrain.json"):
        assert (out / name).is_file(), name
    assert not (out / ".pretrain").exists()  # resume state removed when finished
    saved = EmbBertConfig.load(out)
    assert saved.model == config.model and saved.task is None and saved.tokenizer == "tokenizer"
    from embbert.keras_model.pretrain import read_history

    rows = read_history(out / "history.csv")
    assert [r["step"] for r in rows] == [100, 200, 300]
    with pytest.raises(EmbBertError, match="already holds"):
        from embbert.keras_model.pretrain import pretrain

        pretrain(config, [out / "missing.txt"], out, verbose=0)


def test_pretraining_with_summary_slots_keeps_the_masked_token_measure(tmp_path):
    from embbert.keras_model.pretrain import PretrainSettings, pretrain

    from embbert.datasets.tokenizer import train_tokenizer

    corpus = _pattern_corpus(tmp_path / "corpus.txt", n_lines=400)
    tok = train_tokenizer([corpus], 300, tmp_path / "tokenizer")
    config = EmbBertConfig.create("nano", 32, tokenizer=str(tok), train=TrainConfig(batch_size=16, seed=0))
    settings = PretrainSettings(steps=20, warmup_steps=2, eval_every=10, heldout_sequences=16, summary_slots=2)
    summary = pretrain(config, [corpus], tmp_path / "out", settings, verbose=0)
    assert summary["settings"]["summary_slots"] == 2 and summary["steps"] == 20
    # the held-out figure counts the masked positions only, as without summary slots
    assert 0 < summary["heldout"]["masked_positions"] <= 16 * 5
    with pytest.raises(EmbBertError, match="summary slots"):
        PretrainSettings(summary_slots=-1)


@pytest.mark.parametrize("objective", ["mlm", "electra"])
def test_resume_continues_at_the_saved_step(tmp_path, objective):
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.keras_model.pretrain import PretrainSettings, pretrain, read_history

    corpus = _pattern_corpus(tmp_path / "corpus.txt", n_lines=200)
    tok = train_tokenizer([corpus], 300, tmp_path / "tokenizer")
    config = EmbBertConfig.create("nano", 16, tokenizer=str(tok), train=TrainConfig(batch_size=8, seed=0))
    settings = PretrainSettings(steps=40, warmup_steps=4, eval_every=10, heldout_sequences=8, objective=objective)
    from embbert.keras_model._tf import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the second window (step 20) has been checkpointed
                raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, [corpus], out, settings, verbose=0, callbacks=[Interrupt()])
    assert (out / ".pretrain").is_dir()
    assert [r["step"] for r in read_history(out / "history.csv")] == [10, 20]
    steps_seen = []

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not steps_seen:
                steps_seen.append(int(self.model.optimizer.iterations.numpy()))

    summary = pretrain(config, [], out, resume=True, verbose=0, callbacks=[FirstStep()])
    assert steps_seen == [20]  # continued at the saved step, not from 0
    assert summary["steps"] == 40
    assert [r["step"] for r in read_history(out / "history.csv")] == [10, 20, 30, 40]
    with pytest.raises(EmbBertError, match="nothing to resume"):
        pretrain(config, [], out, resume=True, verbose=0)


def test_preset_by_name_gives_the_outputs_of_its_directory(pattern_run, tmp_path, monkeypatch):
    from embbert.keras_model import presets
    from embbert.keras_model.model import build_classifier, load_backbone_into

    _, _, out, _ = pattern_run
    root = tmp_path / "pretrained"
    shutil.copytree(out, root / "pattern_en", ignore=shutil.ignore_patterns("cache", "pretrainer.weights.h5"))
    monkeypatch.setattr(presets, "PRETRAINED_ROOT", root)
    assert presets.list_presets() == ["pattern_en"]
    clf = EmbBertConfig.create("nano", 32, num_labels=3)
    x = {"token_ids": np.array([[CLS, 7, 8, 9, 10] + [0] * 27], np.int32),
         "segment_ids": np.array([[1] * 5 + [0] * 27], np.int32)}
    outputs = []
    for source in ("pattern_en", str(out)):
        from embbert.keras_model._tf import keras

        keras.utils.set_random_seed(5)  # same head initialisation for both
        model = build_classifier(clf)
        load_backbone_into(model, source, clf)
        outputs.append(model(x, training=False).numpy())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    with pytest.raises(EmbBertError, match="shipped preset"):
        presets.preset_dir("no_such_preset")
    with pytest.raises(EmbBertError, match="does not match"):
        load_backbone_into(build_classifier(EmbBertConfig.create("tiny", 32)), "pattern_en",
                           EmbBertConfig.create("tiny", 32))


@pytest.mark.parametrize("name", ["tiny_en", "embbert_en"])
def test_shipped_presets_load_by_name(name, tmp_path):
    import h5py

    from embbert.keras_model import presets
    from embbert.keras_model.backbone import EmbBertBackbone
    from embbert.keras_model.model import build_classifier, load_backbone_into, save_weights

    if name not in presets.list_presets():
        pytest.fail(f"preset {name} is not shipped")
    d = presets.preset_dir(name)
    card = (d / "README.md").read_text()
    assert "held-out masked-token accuracy" in card.lower()
    for f in d.rglob("*"):
        assert f.stat().st_size < 2 * 1024 * 1024, f
    pre = EmbBertConfig.load(d)
    model = build_classifier(pre.replace(num_labels=2))
    before = [w.copy() for w in EmbBertBackbone.of(model).embedder.get_weights()]
    load_backbone_into(model, name, pre)
    after = EmbBertBackbone.of(model).embedder.get_weights()
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(after, before))
    # the backbone saves as the preset was saved: the same file layout, the same values
    saved = save_weights(EmbBertBackbone.of(model), tmp_path / "backbone.weights.h5")

    def arrays(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda key, item: out.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
        return out

    shipped, again = arrays(d / "backbone.weights.h5"), arrays(saved)
    assert sorted(again) == sorted(shipped) and len(shipped) > 10
    for key, value in shipped.items():
        np.testing.assert_array_equal(again[key], value)
    summary = json.loads((d / "pretrain.json").read_text())
    assert summary["heldout_accuracy"] > summary["baseline_accuracy"]


# -- ELECTRA replaced-token detection (keras_model/electra.py) ---------------------------------------------------

def test_electra_corruption_replaces_only_masked_positions_and_labels_them():
    import tensorflow as tf

    from embbert.datasets.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID
    from embbert.keras_model.electra import build_electra

    config = EmbBertConfig.create("nano", 12)
    model = build_electra(config, 3)
    model.clean_fraction = 0.0
    original = np.array([[CLS_ID, 10, 11, 12, 13, 14, SEP_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
                         [CLS_ID, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, SEP_ID]], np.int32)
    positions = np.array([[1, 3, 0], [2, 5, 9]], np.int32)
    weights = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    ids = np.take_along_axis(original, positions, 1) * (weights > 0)
    masked = original.copy()
    for b in range(2):
        masked[b, positions[b][weights[b] > 0]] = MASK_ID
    V = config.model.vocab_size
    # a generator sure of token 7 at every slot: every masked position becomes 7
    logits = np.full((2, 3, V), -1e9, np.float32)
    logits[..., 7] = 0.0
    x = {"token_ids": tf.constant(masked), "segment_ids": tf.ones_like(masked), "mask_positions": tf.constant(positions)}
    corrupted, labels, valid = (t.numpy() for t in model.corrupt(x, tf.constant(ids), tf.constant(weights),
                                                                  tf.constant(logits)))
    expected = original.copy()
    for b in range(2):
        expected[b, positions[b][weights[b] > 0]] = 7
    assert (corrupted == expected).all()
    assert labels[0].tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]  # position 0: the window holds a replacement
    assert labels[1, 1:].tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0] and labels[1, 0] == 1
    assert valid[0].tolist() == [1] * 7 + [0] * 5 and valid[1].all()
    # a sample equal to the original counts as original; a clean window keeps every token
    logits[..., 7] = -1e9
    logits[0, 0, 10] = 0.0
    logits[0, 1, 12] = 0.0
    corrupted, labels, _ = (t.numpy() for t in model.corrupt(x, tf.constant(ids), tf.constant(weights),
                                                              tf.constant(logits)))
    assert (corrupted[0] == original[0]).all() and not labels[0].any()
    model.clean_fraction = 1.0
    corrupted, labels, _ = (t.numpy() for t in model.corrupt(x, tf.constant(ids), tf.constant(weights),
                                                              tf.constant(logits)))
    assert (corrupted == original).all() and not labels.any()
    # random_fraction 1: every replacement is drawn uniformly from the non-special ids, none from the generator
    from embbert.datasets.tokenizer import NUM_SPECIAL_TOKENS

    model.clean_fraction, model.random_fraction = 0.0, 1.0
    logits[...] = -1e9
    logits[..., 7] = 0.0
    draws = np.concatenate([model.corrupt(x, tf.constant(ids), tf.constant(weights), tf.constant(logits))[0].numpy()
                            [np.arange(2)[:, None], positions][weights > 0] for _ in range(20)])
    assert (draws >= NUM_SPECIAL_TOKENS).all() and (draws < V).all() and (draws != 7).mean() > 0.9


@pytest.mark.slow
def test_electra_pretraining_learns_to_detect_and_its_backbone_fine_tunes(tmp_path):
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.keras_model.model import build_classifier, load_backbone_into
    from embbert.keras_model.pretrain import PretrainSettings, pretrain, read_history

    corpus = _pattern_corpus(tmp_path / "corpus.txt", n_lines=1500)
    tok = train_tokenizer([corpus], 300, tmp_path / "tokenizer")
    config = EmbBertConfig.create("nano", 32, tokenizer=str(tok), train=TrainConfig(batch_size=32, seed=0))
    settings = PretrainSettings(steps=300, learning_rate=3e-3, warmup_steps=30, eval_every=100, heldout_sequences=32,
                                objective="electra")
    out = tmp_path / "out"
    summary = pretrain(config, [corpus], out, settings, verbose=0)
    assert summary["settings"]["objective"] == "electra" and summary["steps"] == 300
    assert summary["cpu_seconds_this_sitting"] > 0
    rows = read_history(out / "history.csv")
    assert [r["step"] for r in rows] == [100, 200, 300]
    last = rows[-1]
    assert {"mlm_loss", "rtd_loss", "rtd_accuracy"} <= set(last)
    # about 11 % of the valid positions are replaced (15 % masked, 3/4 of the windows, minus correct samples):
    # always answering "original" scores about 0.89; the trained discriminator must do better than its
    # first window, and the generator must beat the most-frequent token on held-out masked positions
    assert last["rtd_loss"] < rows[0]["rtd_loss"]
    assert summary["heldout_accuracy"] > summary["baseline_accuracy"], summary
    # the saved backbone is the discriminator: it loads into a classifier of the same preset
    saved = EmbBertConfig.load(out)
    classifier = build_classifier(saved.replace(num_labels=2))
    load_backbone_into(classifier, out, saved)
    with pytest.raises(EmbBertError, match="summary slots are a masked-LM option"):
        PretrainSettings(objective="electra", summary_slots=1)
    with pytest.raises(EmbBertError, match="unknown pretraining objective"):
        PretrainSettings(objective="rtd")
    with pytest.raises(EmbBertError, match="random replacement share"):
        PretrainSettings(objective="electra", rtd_random=1.5)
