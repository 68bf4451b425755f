"""Which matrix products of a compiled training step XLA:CPU runs in bfloat16 (issue 20).

    python bench/product_dtypes.py dsvae default bfloat16     # method, variant, precision
    python bench/product_dtypes.py dsvae default bf16_products

Compiles the method's Sprites train step at batch 32 (`profile_ops_cpu.build_step`; nothing is
run) and reads every `dot` and `convolution` of the optimized HLO: its operand dtypes, its
FLOPs (2 x the output size x the contracted size; a `while` body is counted once, as XLA's cost
analysis does) and the source op it came from (HLO `op_name`). Prints the FLOPs per operand
dtype pair, then the `top` largest products. A product whose operands XLA converted to float32
shows as (f32, f32) even when the program asked for bfloat16.
"""

from __future__ import annotations

import collections
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from profile_ops_cpu import build_step  # noqa: E402

_DEFINITION = re.compile(r"%([\w.\-]+) = (\w+)\[([\d,]*)\]")
_PRODUCT = re.compile(r"%[\w.\-]+ = (\w+)\[([\d,]*)\]\S* (dot|convolution)\("
                      r"%([\w.\-]+), %([\w.\-]+)\)([^\n]*)")


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def products(hlo: str) -> list[dict]:
    """Every dot / convolution of an HLO module's text, fusion bodies included."""
    types = {name: (dtype, _dims(dims)) for name, dtype, dims in _DEFINITION.findall(hlo)}
    found = []
    for _, out, kind, lhs_name, rhs_name, attrs in _PRODUCT.findall(hlo):
        (lhs_type, lhs), (rhs_type, rhs) = types[lhs_name], types[rhs_name]
        if kind == "dot":
            contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs)
            k = math.prod(lhs[i] for i in _dims(contract.group(1))) if contract else 1
        else:  # a convolution: kernel spatial x input features (`dim_labels` ..._01io->...)
            labels = re.search(r"dim_labels=\w+_(\w+)->", attrs).group(1)
            k = math.prod(d for d, label in zip(rhs, labels) if label != "o")
        source = re.search(r'op_name="([^"]+)"', attrs)
        found.append({"kind": kind, "dtypes": (lhs_type, rhs_type), "lhs": lhs, "rhs": rhs,
                      "flops": 2 * math.prod(_dims(out)) * k,
                      "source": source.group(1) if source else ""})
    return found


def main() -> None:
    defaults = ["dsvae", "default", "bfloat16", "12"]
    method, variant, dtype, top = sys.argv[1:5] + defaults[len(sys.argv[1:5]):]
    top = int(top)
    train_step, args = build_step(method, variant, dtype)
    found = products(train_step.lower(*args).compile().as_text())
    total = sum(p["flops"] for p in found)
    by_dtypes: collections.Counter = collections.Counter()
    for p in found:
        by_dtypes[p["dtypes"]] += p["flops"]
    print(f"{method} :{variant} precision={dtype}, batch 32: {len(found)} products, "
          f"{total / 1e9:.1f} GFLOP (while bodies once)")
    for dtypes, flops in by_dtypes.most_common():
        print(f"  operands {dtypes[0]} x {dtypes[1]}: {flops / 1e9:8.2f} GFLOP "
              f"({100 * flops / total:.0f} %)")
    for p in sorted(found, key=lambda p: -p["flops"])[:top]:
        print(f"  {p['flops'] / 1e9:7.2f} GFLOP  {p['dtypes'][0]}[{p['lhs']}] x "
              f"{p['dtypes'][1]}[{p['rhs']}]  {p['source'][-70:]}")


if __name__ == "__main__":
    main()
