"""The run directory: the one module that names every file a stage reads or writes.

Stages talk one way through a run directory (and its `config.json`); each name below is
written by exactly one stage and read by the later ones. Nothing else in the package spells
a run file's name.

    RUN_DIR/
      config.json               EmbBertConfig (every stage)                      core.config
      tokenizer/                the BPE tokenizer of the run (train)             datasets.tokenizer
      float.weights.h5          float classifier, best validation epoch (train)  keras_model.train
      qat.weights.h5            QAT classifier, best validation epoch (train)
      history.csv               one row per epoch and stage (train)
      metrics.json              float and QAT validation/test metrics (train)
      tensorboard/              TensorBoard logs (train --tensorboard)
      .train/                   resume state of an unfinished training (train)
      model_int8.tflite(.sha256) the full-int8 FlatBuffer and its digest (convert) tflite.convert
      model_float32.tflite      the float FlatBuffer of the same graph (convert)
      model_int8.names.json     tensor index -> converter name (convert)
      check.json                float / QAT / TFLite / TFLM metrics (check)      tflite.check
      arena_report.{json,md,png} the TFLM arena report (arena)                   tflite.arena
      micro_app/                the exported C sources (export, default place)   tflite.export
      stages.json, summary.txt, run.json   `embbert run`'s record                embbert.run

A pretraining directory (`embbert pretrain --out`, and a shipped preset) has `config.json`,
`tokenizer/`, `backbone.weights.h5`, `pretrainer.weights.h5`, `history.csv`, `history.png`,
`pretrain.json`, `cache/` and `.pretrain/`. A preset written by `save_to_preset` (Python API) has
`config.json`, `metadata.json`, `tokenizer/`, `backbone.weights.h5`, a model card `README.md` and,
for a classifier, `float.weights.h5` or `qat.weights.h5` (so it is also a run directory).
"""
from __future__ import annotations

# -- every run directory -----------------------------------------------------------------
CONFIG = "config.json"
TOKENIZER_DIR = "tokenizer"

# -- training (embbert train) --------------------------------------------------------------
FLOAT_WEIGHTS = "float.weights.h5"
QAT_WEIGHTS = "qat.weights.h5"
HISTORY = "history.csv"
METRICS = "metrics.json"
TENSORBOARD_DIR = "tensorboard"
TRAIN_STATE_DIR = ".train"
TRAIN_STATE = "state.json"  # inside TRAIN_STATE_DIR: the finished training stages
WORKER_DIR_PREFIX = ".worker-"  # + i: the files of multi-worker worker i > 0, removed when it ends (train)

# -- conversion, checks, arena report, export -----------------------------------------------
INT8_MODEL = "model_int8.tflite"
INT8_SHA256 = INT8_MODEL + ".sha256"  # sha256sum format; `embbert export` refuses a model that differs
FLOAT_MODEL = "model_float32.tflite"
TENSOR_NAMES = "model_int8.names.json"
CHECK = "check.json"
ARENA_JSON = "arena_report.json"
ARENA_MD = "arena_report.md"
ARENA_PNG = "arena_report.png"
EXPORT_DIR = "micro_app"

# -- embbert run -----------------------------------------------------------------------------
STAGES = "stages.json"
SUMMARY = "summary.txt"
RUN_RECORD = "run.json"

#: Everything a run directory can hold (`embbert run --force` removes these and nothing else).
RUN_FILES = (CONFIG, TOKENIZER_DIR, TRAIN_STATE_DIR, FLOAT_WEIGHTS, QAT_WEIGHTS, HISTORY, METRICS, TENSORBOARD_DIR,
             INT8_MODEL, INT8_SHA256, FLOAT_MODEL, TENSOR_NAMES, CHECK, ARENA_JSON, ARENA_MD, ARENA_PNG, EXPORT_DIR, SUMMARY,
             RUN_RECORD, STAGES)

# -- pretraining (embbert pretrain) and shipped presets --------------------------------------
BACKBONE_WEIGHTS = "backbone.weights.h5"  # embedder + encoders: what a fine-tuning run loads
PRETRAINER_WEIGHTS = "pretrainer.weights.h5"  # backbone + MLM head: what continued pretraining loads
PRETRAIN_SUMMARY = "pretrain.json"
PRETRAIN_HISTORY = HISTORY
PRETRAIN_PLOT = "history.png"
PRETRAIN_CACHE_DIR = "cache"
PRETRAIN_STATE_DIR = ".pretrain"
PRETRAIN_SETTINGS = "settings.json"  # inside PRETRAIN_STATE_DIR
#: Everything `embbert pretrain` writes into its --out (`pretrain --force` removes these and nothing else).
PRETRAIN_FILES = (CONFIG, TOKENIZER_DIR, BACKBONE_WEIGHTS, PRETRAINER_WEIGHTS, PRETRAIN_SUMMARY, PRETRAIN_HISTORY,
                  PRETRAIN_PLOT, PRETRAIN_CACHE_DIR, PRETRAIN_STATE_DIR)
MODEL_CARD = "README.md"
PRESET_METADATA = "metadata.json"  # versions, kind, parameter count (save_to_preset, embbert.api)
