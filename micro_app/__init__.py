"""The hand-written C/C++ sources of the TFLM application, installed as the data package
`embbert.micro_app` (pyproject.toml) so that `embbert export` finds them in a wheel as in a checkout."""
