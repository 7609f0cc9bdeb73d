"""`DeployForm`: how the deployed int8 graph is built, one frozen value every stage passes whole.

The layers (`layers.py`) read the graph-shape fields, `tflite/convert.py` the FlatBuffer ones; the
recorded form (`asdict`, in model_int8.names.json) loads back with `DeployForm.from_record`.
docs/memory.md measures the bytes of each field. No TensorFlow here: the command line and the
benchmarks build forms by name before TensorFlow is imported.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class DeployForm:
    """The deployed graph's form (the same maths as the training graph; the field order is the record's).

    transposed_keys: the context matmul reads a pre-transposed y (no persistent transposed copy per
      BATCH_MATMUL in TFLM); off, the encoder layers run in their training form (training=False).
    first_token_only: the last encoder layer computes position 0 only (the head reads nothing else).
    strip_names: tensor names (but the inputs' and outputs') and signature strings removed from the
      FlatBuffer, the names kept in model_int8.names.json.
    offline_plan: TFLM's `OfflineMemoryAllocation` metadata, written only where TFLM's measured
      minimal arena is smaller with it than without.
    causal_valid: the causal convolution as k-1 zero steps (a PAD, filled with the zero point) + a
      VALID convolution with the k trained taps, instead of a SAME convolution with k-1 zero taps
      (half the CMSIS-NN scratch, one more (L+k-1) x d buffer while it runs).
    query_blocks: the attention of every layer but a token-0 one in that many query row blocks (one
      block's scores alive at a time).
    constant_positions: the position path's (L, d) output as an int8 constant in flash instead of a
      FULLY_CONNECTED computed on every inference.
    schedule: the operators reordered (`tflite.planner.schedule_ops`; outputs bit-identical)."""
    transposed_keys: bool = True
    first_token_only: bool = True
    strip_names: bool = True
    offline_plan: bool = True
    causal_valid: bool = True
    query_blocks: int = 1
    constant_positions: bool = False
    schedule: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) if f.name == "query_blocks" \
                else isinstance(value, bool)
            if not ok:
                raise ValueError(f"deploy form: {f.name} = {value!r} is not a valid value")

    @property
    def exact(self) -> bool:
        """True where the graph gives the logits of the default form bit for bit (query blocks and the
        position constant re-round intermediate values: measured, not exact; docs/memory.md)."""
        return self.query_blocks == 1 and not self.constant_positions

    def but(self, **changes: Any) -> "DeployForm":
        """This form with the named fields changed."""
        return replace(self, **changes)

    def label(self) -> str:
        """The fields that are on, e.g. `transposed_keys, first_token_only, query_blocks=4` ("none": all off)."""
        on = [k if v is True else f"{k}={v}" for k, v in asdict(self).items()
              if v and not (k == "query_blocks" and v == 1)]
        return ", ".join(on) if on else "none"

    def record(self) -> dict[str, Any]:
        """The form as the JSON record convert writes (field -> value)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "DeployForm":
        return cls(**record)

    # -- what the layers read (each layer's view of the form) -----------------------------------
    def layer_form(self, last: bool) -> "DeployForm":
        """The form one encoder layer runs: token 0 only on the last layer; the deployed-only fields
        off without transposed keys (the encoder layers' training form)."""
        if not self.transposed_keys:
            return replace(self, first_token_only=False, causal_valid=False, query_blocks=1)
        return replace(self, first_token_only=self.first_token_only and last)


#: Named forms. `default`: what `embbert convert` starts from; `plain`: the training graph at batch 1
#: (every field off), the baseline docs/memory.md and the latency benchmark measure the others against.
DEFAULT = DeployForm()
PLAIN = DeployForm(transposed_keys=False, first_token_only=False, strip_names=False, offline_plan=False,
                   causal_valid=False, query_blocks=1, constant_positions=False, schedule=False)
FORMS = {"default": DEFAULT, "plain": PLAIN}


def form(name: str) -> DeployForm:
    """A named form (`FORMS`)."""
    try:
        return FORMS[name]
    except KeyError:
        raise ValueError(f"unknown deploy form {name!r}; choose one of {', '.join(FORMS)}") from None


__all__ = ["DeployForm", "DEFAULT", "PLAIN", "FORMS", "form"]
