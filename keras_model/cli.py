"""Sub-commands of the keras_model stage: `model summary`, `pretrain`, `train`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from embbert.core import layout, preflight
from embbert.core.args import add_recipe_arguments, non_negative_float, non_negative_int, positive_float, positive_int
from embbert.core.config import (
    ARCHS, DEFAULT_MAX_LENGTH, DEFAULTS, PAPER_RECIPE, PRESETS, STRATEGIES, EmbBertConfig, PretrainSettings, TrainConfig,
)
from embbert.core.errors import EmbBertError, Interrupted, UsageError
from embbert.core.files import remove_named
from embbert.datasets.loading import check_task_data, data_dir_arg
from embbert.datasets.tasks import max_length_for, task_arg
from embbert.keras_model.presets import init_arg


def _add_distributed_settings(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay,
                   help=f"AdamW weight decay, >= 0 (default {d.weight_decay})")
    p.add_argument("--strategy", choices=STRATEGIES, default=d.strategy,
                   help="tf.distribute strategy: default; mirrored (MirroredStrategy over all local devices); "
                   "multi-worker (MultiWorkerMirroredStrategy over the workers of $TF_CONFIG, docs/training.md)")



def tokenizer_arg(path: str | None) -> str | None:
    """`--tokenizer`: a tokenizer folder (as an absolute path), or None."""
    if path is None:
        return None
    from embbert.datasets.tokenizer import TOKENIZER_FILE

    return str(preflight.directory_with(path, TOKENIZER_FILE, "tokenizer directory", "--tokenizer").resolve())


def register(sub) -> None:
    model = sub.add_parser("model", help="inspect the EmbBERT model", description="Inspect the EmbBERT model.")
    msub = model.add_subparsers(dest="model_command", metavar="<command>", parser_class=type(model))
    msub.required = True
    s = msub.add_parser(
        "summary",
        help="parameter counts, weight bytes and the largest activation of a preset",
        description="Print backbone, head and total parameter counts, float32 and int8 weight bytes, "
        "and the largest activation tensor (bytes, batch 1) at L (--max-length).",
    )
    s.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="size preset (default: every size of --arch)")
    s.add_argument("--arch", choices=ARCHS, default=None,
                   help="architecture (default embbert): EmbBERT or a baseline of the papers (docs/baselines.md)")
    s.add_argument("--num-labels", type=positive_int, required=True, help="number of classes (1 = regression)")
    s.add_argument("--max-length", type=positive_int, default=None, help=f"sequence length L (default {DEFAULT_MAX_LENGTH})")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_summary)

    t = sub.add_parser(
        "train",
        help="fine-tune on a task: float model.fit, then quantisation-aware training",
        description="Fine-tune EmbBERT on a task: stage 1 float model.fit (AdamW, best validation epoch kept), "
        "stage 2 quantisation-aware model.fit with tensorflow-model-optimization. Writes RUN_DIR: config.json, "
        "tokenizer/, float.weights.h5, qat.weights.h5, history.csv, metrics.json.",
    )
    t.add_argument("--task", required=True, help="task name (see `embbert data list`) or a task directory with task.json")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="size preset (default: tiny for embbert, the architecture's own size for the others)")
    t.add_argument("--arch", choices=ARCHS, default=None,
                   help="architecture (default embbert): EmbBERT or a baseline of the papers (docs/baselines.md)")
    t.add_argument("--max-length", type=positive_int, default=None,
                   help=f"sequence length L (default: the task's, `embbert data list`; {DEFAULT_MAX_LENGTH} for a task "
                   "directory)")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument("--data-dir", default=None, help="data directory in hub layout (default $EMBBERT_DATA_DIR, else the hub)")
    t.add_argument("--tokenizer", default=None, help="tokenizer directory (default: train one on the task's train split)")
    t.add_argument("--steps-per-epoch", type=positive_int, default=None, help="steps per epoch (default: one pass)")
    t.add_argument("--max-train-examples", type=positive_int, default=None, help="use a seeded subset of the train split")
    t.add_argument("--init", default=None, help="pretrained backbone: a directory from `embbert pretrain` or a shipped preset name (tiny_en, embbert_en)")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue an interrupted run in --out with its saved settings (an "
                       "option that differs from them is an error)")
    again.add_argument("--force", action="store_true", help="delete the run in --out (only the files a run writes) "
                       "and train again")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to RUN_DIR/tensorboard")
    add_recipe_arguments(t, PAPER_RECIPE, why_lr=", the paper's")
    _add_distributed_settings(t)
    t.set_defaults(func=cmd_train)

    pre = PretrainSettings()  # the defaults of `embbert pretrain`
    p = sub.add_parser(
        "pretrain",
        help="pretraining of the backbone on text corpora (masked LM, or ELECTRA's replaced-token detection)",
        description="MLM pretraining (15% of tokens; 80% [MASK], 10% random, 10% unchanged), or with "
        "--objective electra replaced-token detection on every position (a half-size generator fills the masked "
        "positions), with AdamW, "
        "warm-up + cosine decay, corpus lines packed into full L-token sequences; 1% of the lines held out "
        "and scored every --eval-every steps. Trains the tokenizer first if none is given. Resumable "
        "(--resume); `embbert train --init OUT` starts from the result (docs/pretraining.md).",
    )
    p.add_argument("--corpus", nargs="+", default=None,
                   help="plain-text files (one paragraph per line) or .jsonl files with a \"text\" field")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULTS.preset,
                   help=f"model size preset (default {DEFAULTS.preset})")
    p.add_argument("--max-length", type=positive_int, default=None, help=f"sequence length L (default {DEFAULT_MAX_LENGTH})")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--steps", type=positive_int, default=pre.steps, help=f"training steps (default {pre.steps})")
    p.add_argument("--warmup-steps", type=non_negative_int, default=None,
                   help="linear warm-up steps (default 5%% of --steps)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default=pre.schedule,
                   help="learning-rate schedule: warm-up + cosine decay to 0 (default), or constant")
    p.add_argument("--packing", choices=("full", "lines"), default=pre.packing,
                   help="full: lines joined into full L-token sequences (default); lines: one padded line per sequence")
    p.add_argument("--eval-every", type=positive_int, default=pre.eval_every,
                   help=f"steps between held-out evaluations and checkpoints (default {pre.eval_every})")
    p.add_argument("--jit", action="store_true", help="compile the training step with XLA (jit_compile=True)")
    p.add_argument("--summary-slots", type=non_negative_int, default=pre.summary_slots,
                   help="also predict this many random words of each window from token 0 ([CLS], the token the "
                   f"classifier reads; MLM alone never trains it) (default {pre.summary_slots})")
    p.add_argument("--objective", choices=("mlm", "electra"), default=pre.objective,
                   help="mlm: masked-LM loss on the masked positions (default); electra: a half-size generator "
                   "fills the masked positions and the backbone detects replaced tokens at every position, token 0 "
                   "whether its window holds one (keras_model/electra.py, docs/pretraining.md)")
    p.add_argument("--rtd-weight", type=positive_float, default=pre.rtd_weight,
                   help=f"electra: weight of the detection loss against the generator's (default {pre.rtd_weight:g}, "
                   "the ELECTRA paper's)")
    p.add_argument("--rtd-random", type=float, default=pre.rtd_random,
                   help="electra: share of the replacements drawn uniformly from the vocabulary instead of from "
                   f"the generator, in [0, 1] (default {pre.rtd_random:g}, the paper's)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: train one on the corpus)")
    p.add_argument("--init", default=None, help="continue from a pretrained directory or preset name (e.g. tiny_en)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the interrupted pretraining in --out with its saved "
                       "settings (an option that differs from them, e.g. --steps, is an error)")
    again.add_argument("--force", action="store_true", help="delete the pretraining in --out (only the files it writes) "
                       "and start again")
    p.add_argument("--learning-rate", type=positive_float, default=pre.learning_rate,
                   help=f"peak AdamW learning rate (default {pre.learning_rate:g})")
    p.add_argument("--batch-size", type=positive_int, default=TrainConfig().batch_size,
                   help=f"batch size (default {TrainConfig().batch_size})")
    p.add_argument("--seed", type=non_negative_int, default=TrainConfig().seed, help="random seed, >= 0 (default 0)")
    _add_distributed_settings(p)
    p.set_defaults(func=cmd_pretrain)


def _config_from_args(args, **extra) -> EmbBertConfig:
    train = TrainConfig(
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        epochs=getattr(args, "epochs", 0),
        qat_epochs=getattr(args, "qat_epochs", 0),
        qat_learning_rate=getattr(args, "qat_learning_rate", TrainConfig().qat_learning_rate),
        seed=args.seed,
        strategy=args.strategy,
        steps_per_epoch=getattr(args, "steps_per_epoch", None),
        max_train_examples=getattr(args, "max_train_examples", None),
    )
    return EmbBertConfig.create(args.preset, args.max_length, train=train, tokenizer=args.tokenizer, **extra)


def cmd_summary(args) -> int:
    if args.preset is not None:
        names = [preflight.arch_preset(args.arch, args.preset)]
    else:
        arch = args.arch or "embbert"
        names = [name for name, m in PRESETS.items() if m.arch == arch]
    configs = []
    for name in names:  # checked before TF
        length = args.max_length if args.max_length is not None else min(DEFAULT_MAX_LENGTH,
                                                                          PRESETS[name].max_positions)
        preflight.max_length(length, name)
        configs.append(EmbBertConfig.create(name, length, num_labels=args.num_labels))
    from .summary import model_summary

    infos = [model_summary(config) for config in configs]
    if args.json:
        print(json.dumps(infos[0] if args.preset is not None else infos, indent=2))
        return 0
    for info in infos:
        arch = f"{info['arch']} " if info["arch"] != "embbert" else "EmbBERT "
        shape = (f"V={info['vocab_size']} L={info['max_length']} d={info['hidden']} heads={info['heads']} "
                 f"f={info['ffn']} layers={info['layers']}" if info["arch"] == "bert" else
                 f"V={info['vocab_size']} L={info['max_length']} d={info['hidden']} r={info['reduced']} "
                 f"e={info['expansion']} k={info['kernel']} layers={info['layers']}")
        print(f"{arch}preset {info['preset']}: {shape}")
        print(f"  backbone parameters   {info['backbone_params']:>12,}")
        print(f"  head parameters       {info['head_params']:>12,}  (d*N + N, N={args.num_labels})")
        print(f"  total parameters      {info['total_params']:>12,}")
        print(f"  float32 weight bytes  {info['float32_weight_bytes']:>12,}")
        exact = "" if info["arch"] == "embbert" else "; an upper bound, `embbert bench arch` measures the graph"
        print(f"  int8 weight bytes     {info['int8_weight_bytes']:>12,}  (int8 weights, int32 biases{exact})")
        print(f"  largest activation    {info['largest_activation_bytes']:>12,}  bytes at int8, batch 1 "
              f"({info['largest_activation']})")
    return 0


def check_train_args(args) -> EmbBertConfig:
    """Everything `embbert train` can check before TensorFlow is imported; the run's config."""
    args.preset = preflight.arch_preset(args.arch, args.preset)
    task = task_arg(args.task)
    data_dir = data_dir_arg(args.data_dir)
    args.tokenizer = tokenizer_arg(args.tokenizer)
    args.init = init_arg(args.init)
    out = preflight.output_dir(args.out)
    state = out / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE
    holds_run = (out / layout.METRICS).is_file() or (out / layout.TRAIN_STATE_DIR).exists()
    if args.resume and not state.is_file():
        what = "the run there is finished" if (out / layout.METRICS).is_file() else "no unfinished run there"
        raise UsageError(f"{out}: nothing to resume ({what})")
    if holds_run and not args.resume and not args.force:
        raise UsageError(f"{out} already holds a run; use --resume to continue it, --force to train it again, "
                         "or choose another --out")
    if args.resume:
        preflight.resumed_run(out, args, task, "drop them to continue the run, or start a new one with another --out")
    if args.strategy == "multi-worker":
        from embbert.core.args import check_tf_config

        check_tf_config()
    args.max_length = preflight.max_length(max_length_for(task, args.max_length), args.preset)
    if not args.resume:
        check_task_data(task, data_dir)  # split files, columns, rows; a --data-dir without the task: never the hub
        preflight.fits_preset(args.preset, args.init, args.tokenizer)
    return _config_from_args(args, task=task, data_dir=data_dir)


def cmd_train(args) -> int:
    config = check_train_args(args)
    from .distribute import make_strategy
    from .train import train

    if config.train.strategy == "multi-worker":
        make_strategy("multi-worker")  # TensorFlow wants it before any other operation

    out = Path(args.out)
    if args.force and ((out / layout.METRICS).exists() or (out / layout.TRAIN_STATE_DIR).exists()):
        print(f"--force: removing the run in {out}", flush=True)
        remove_named(out, layout.RUN_FILES)
    resumable = out / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE
    again = "continue it with the same command and --resume (or --force to train it again)"
    try:
        result = train(config, args.out, init=args.init, resume=args.resume, tensorboard=args.tensorboard)
    except KeyboardInterrupt:
        if resumable.is_file():
            raise Interrupted(f"interrupted; {out} keeps the finished epochs: {again}") from None
        raise
    except EmbBertError as exc:
        if resumable.is_file() and not isinstance(exc, UsageError):
            raise EmbBertError(f"{exc} ({out} keeps the finished epochs: fix this, then {again})") from None
        raise
    except Exception as exc:  # noqa: BLE001 - a lost peer is reported as what it is
        from ._tf import tf

        if config.train.strategy == "multi-worker" and isinstance(exc, (tf.errors.UnavailableError,
                                                                        tf.errors.CancelledError)):
            raise EmbBertError("a worker of the cluster stopped or cannot be reached; restart every worker with "
                               "the same command and --resume to continue from the last finished epoch") from None
        raise
    m = result["metric"]
    print(f"done: {args.out}  test {m}: float {result['float_test']:.4f}  QAT {result['qat_test']:.4f}")
    return 0


def check_pretrain_args(args) -> None:
    """What `embbert pretrain` can check before TensorFlow is imported."""
    if not args.resume and not args.corpus:
        raise UsageError("give --corpus FILE... (or --resume to continue a run)")
    if args.corpus:
        preflight.files(args.corpus, "--corpus", "corpus file")
    args.tokenizer = tokenizer_arg(args.tokenizer)
    if PRESETS[args.preset].arch not in ("embbert", "bert"):
        raise UsageError(f"--preset {args.preset}: the {PRESETS[args.preset].arch} architecture ends in a mean over "
                         "the tokens and has no masked-LM head to pretrain (embbert and bert have)")
    preflight.max_length(args.max_length, args.preset)
    out = preflight.output_dir(args.out)
    holds = (out / layout.BACKBONE_WEIGHTS).exists() or (out / layout.PRETRAIN_STATE_DIR).exists()
    if holds and not args.resume and not args.force:
        raise UsageError(f"{out} already holds a pretraining run; use --resume to continue it, --force to start it "
                         "again, or choose another --out")
    if args.resume:
        _check_pretrain_resume(out, args)
    else:
        if args.warmup_steps is not None and args.warmup_steps >= args.steps:
            raise UsageError(f"--warmup-steps {args.warmup_steps} must be less than --steps {args.steps}")
        args.init = init_arg(args.init)
        preflight.fits_preset(args.preset, args.init, None if args.init else args.tokenizer)  # --init brings its own
    if args.strategy == "multi-worker":
        from embbert.core.args import check_tf_config

        check_tf_config()


def _check_pretrain_resume(out, args) -> None:
    """`pretrain --resume`: an unfinished pretraining in `out`, and no option that contradicts its saved
    settings (`.pretrain/settings.json`, config.json): it continues with them, to the saved --steps."""
    settings_file = out / layout.PRETRAIN_STATE_DIR / layout.PRETRAIN_SETTINGS
    if not settings_file.is_file():
        what = "it is finished" if (out / layout.BACKBONE_WEIGHTS).is_file() else "no unfinished pretraining there"
        raise UsageError(f"{out}: nothing to resume ({what})")
    try:
        record = json.loads(settings_file.read_text(encoding="utf-8"))
        saved = dict(record["settings"], corpus=list(record["corpus"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{settings_file}: not a valid pretraining record; start again with another --out") from None
    config = preflight.run_dir(out)
    saved.update(jit=saved.get("jit_compile"), preset=config.preset, max_length=config.max_length,
                 batch_size=config.train.batch_size, seed=config.train.seed,
                 weight_decay=config.train.weight_decay, strategy=config.train.strategy)
    given = preflight.given_options(args)
    steps = args.steps if "steps" in given else saved.get("steps", args.steps)
    saved.setdefault("objective", "mlm")  # a record written before objectives existed
    saved.setdefault("rtd_weight", PretrainSettings.rtd_weight)
    saved.setdefault("rtd_random", PretrainSettings.rtd_random)
    now = {name: getattr(args, name) for name in ("steps", "learning_rate", "schedule", "warmup_steps", "packing",
                                                 "summary_slots", "jit", "preset", "max_length", "batch_size",
                                                 "seed", "weight_decay", "strategy", "objective", "rtd_weight",
                                                 "rtd_random")}
    now.update(eval_every=min(args.eval_every, steps), corpus=[str(Path(c).resolve()) for c in args.corpus or ()])
    preflight.same_settings(out, now, saved, given, "drop them to continue it, or start a new pretraining with "
                            "another --out")


def cmd_pretrain(args) -> int:
    check_pretrain_args(args)
    if args.strategy == "multi-worker":
        from .distribute import make_strategy

        make_strategy("multi-worker")  # TensorFlow wants it before any other operation
    from .pretrain import pretrain

    if not args.resume and not args.corpus:
        raise EmbBertError("give --corpus FILE... (or --resume to continue a run)")
    settings = PretrainSettings(
        steps=args.steps, learning_rate=args.learning_rate, schedule=args.schedule,
        warmup_steps=args.warmup_steps if args.warmup_steps is not None else args.steps // 20,
        packing=args.packing, eval_every=min(args.eval_every, args.steps), jit_compile=args.jit,
        summary_slots=args.summary_slots, objective=args.objective, rtd_weight=args.rtd_weight,
        rtd_random=args.rtd_random,
    )
    config = _config_from_args(args)
    out = Path(args.out)
    if args.force and ((out / layout.BACKBONE_WEIGHTS).exists() or (out / layout.PRETRAIN_STATE_DIR).exists()):
        print(f"--force: removing the pretraining in {out}", flush=True)
        remove_named(out, layout.PRETRAIN_FILES)
    try:
        result = pretrain(config, args.corpus or [], args.out, settings, init=args.init, resume=args.resume)
    except KeyboardInterrupt:
        if (out / layout.PRETRAIN_STATE_DIR / layout.PRETRAIN_SETTINGS).is_file():
            raise Interrupted(f"interrupted; {out} keeps the last checkpoint: continue it with the same command and "
                              "--resume (or --force to start it again)") from None
        raise
    print(f"done: {args.out}  {result['steps']} steps, {result['tokens_seen']:,} tokens; held-out masked accuracy "
          f"{result['heldout_accuracy']:.4f} (most-frequent-token baseline {result['baseline_accuracy']:.4f})")
    return 0
