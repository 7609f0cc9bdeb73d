"""The hand-written C/C++ sources of the TFLM application, installed as the data package
`embbert.micro_app` (pyproject.toml) so that `embbert export` finds them in a wheel as in a checkout."""
from pathlib import Path as _Path

#: this folder, wherever the package is installed (a wheel's site-packages or the checkout)
ROOT = _Path(__file__).resolve().parent
