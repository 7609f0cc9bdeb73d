"""EmbBERT-Micro: tiny BERT-style classifiers for microcontrollers."""
import os as _os

# tfmot needs Keras 2: make `import tensorflow` pick tf_keras everywhere in the package.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
