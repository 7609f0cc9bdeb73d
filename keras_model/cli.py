"""Sub-commands of the keras_model stage: `model summary`, `pretrain`, `train`."""
from __future__ import annotations

import argparse
import json

from embbert.cli import non_negative_int, positive_float, positive_int
from embbert.config import PRESETS, EmbBertConfig, TrainConfig
from embbert.errors import EmbBertError


def _add_train_settings(p: argparse.ArgumentParser, *, lr: float) -> None:
    d = TrainConfig()
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    p.add_argument("--learning-rate", type=positive_float, default=lr, help=f"AdamW learning rate (default {lr})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay})")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                   help="tf.distribute strategy: default, or mirrored (MirroredStrategy over all local devices)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")


def register(sub) -> None:
    model = sub.add_parser("model", help="inspect the EmbBERT model", description="Inspect the EmbBERT model.")
    msub = model.add_subparsers(dest="model_command", metavar="<command>", parser_class=type(model))
    msub.required = True
    s = msub.add_parser(
        "summary",
        help="parameter counts, weight bytes and the largest activation of a preset",
        description="Print backbone, head and total parameter counts, float32 and int8 weight bytes, "
        "and the largest activation tensor (bytes, batch 1) at the preset's L.",
    )
    s.add_argument("--preset", choices=sorted(PRESETS), required=True, help="model size preset")
    s.add_argument("--num-labels", type=positive_int, required=True, help="number of classes (1 = regression)")
    s.add_argument("--max-length", type=positive_int, default=None, help="sequence length L (default: the preset's)")
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
    t.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size preset (default tiny)")
    t.add_argument("--max-length", type=positive_int, default=128, help="sequence length L (default 128)")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument("--data-dir", default=None, help="data directory in hub layout (default $EMBBERT_DATA_DIR, else the hub)")
    t.add_argument("--tokenizer", default=None, help="tokenizer directory (default: train one on the task's train split)")
    t.add_argument("--epochs", type=non_negative_int, default=10, help="float epochs (default 10)")
    t.add_argument("--qat-epochs", type=non_negative_int, default=2, help="quantisation-aware epochs (default 2)")
    t.add_argument("--qat-learning-rate", type=positive_float, default=2e-5, help="QAT learning rate (default 2e-5)")
    t.add_argument("--steps-per-epoch", type=positive_int, default=None, help="steps per epoch (default: one pass)")
    t.add_argument("--max-train-examples", type=positive_int, default=None, help="use a seeded subset of the train split")
    t.add_argument("--init", default=None, help="pretrained backbone directory from `embbert pretrain`")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to RUN_DIR/tensorboard")
    _add_train_settings(t, lr=5e-5)
    t.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "pretrain",
        help="masked-language-model pretraining of the backbone on text corpora",
        description="MLM pretraining (15%% of tokens; 80%% [MASK], 10%% random, 10%% unchanged) with AdamW. "
        "Trains the tokenizer first if none is given. `embbert train --init OUT` starts from the result.",
    )
    p.add_argument("--corpus", nargs="+", required=True, help="plain-text files, one paragraph per line")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size preset (default tiny)")
    p.add_argument("--max-length", type=positive_int, default=128, help="sequence length L (default 128)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--steps", type=positive_int, default=1000, help="training steps (default 1000)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: train one on the corpus)")
    _add_train_settings(p, lr=2e-4)
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
    from .summary import model_summary

    config = EmbBertConfig.create(args.preset, args.max_length, num_labels=args.num_labels)
    info = model_summary(config)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"EmbBERT preset {args.preset}: V={info['vocab_size']} L={info['max_length']} d={info['hidden']} "
          f"r={info['reduced']} e={info['expansion']} k={info['kernel']} layers={info['layers']}")
    print(f"  backbone parameters   {info['backbone_params']:>12,}")
    print(f"  head parameters       {info['head_params']:>12,}  (d*N + N, N={args.num_labels})")
    print(f"  total parameters      {info['total_params']:>12,}")
    print(f"  float32 weight bytes  {info['float32_weight_bytes']:>12,}")
    print(f"  int8 weight bytes     {info['int8_weight_bytes']:>12,}  (int8 weights, int32 biases)")
    print(f"  largest activation    {info['largest_activation_bytes']:>12,}  bytes at int8, batch 1 "
          f"({info['largest_activation']})")
    return 0


def cmd_train(args) -> int:
    from .train import train

    config = _config_from_args(args, task=args.task, data_dir=args.data_dir)
    result = train(config, args.out, init=args.init, resume=args.resume, tensorboard=args.tensorboard)
    m = result["metric"]
    print(f"done: {args.out}  test {m}: float {result['float_test']:.4f}  QAT {result['qat_test']:.4f}")
    return 0


def cmd_pretrain(args) -> int:
    from .pretrain import pretrain

    config = _config_from_args(args)
    if args.strategy not in ("default", "mirrored"):
        raise EmbBertError(f"unknown strategy {args.strategy}")
    result = pretrain(config, args.corpus, args.out, steps=args.steps, learning_rate=args.learning_rate)
    print(f"done: {args.out}  MLM loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}, "
          f"accuracy {result['last_accuracy']:.3f}")
    return 0
