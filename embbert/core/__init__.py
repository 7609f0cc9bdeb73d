"""The bottom of the package: what every stage uses and that uses no stage.

* `errors`    the exceptions the command line turns into one-line errors;
* `config`    `EmbBertConfig` (size preset + task + length + training settings), the presets,
              every default and its validation;
* `layout`    the run directory: the one place that names every file a stage writes;
* `files`     atomic writes (never half-written);
* `args`      argument types and the parser class of every command;
* `preflight` checks of user-given paths before TensorFlow is imported.
"""
