#!/bin/bash
# Times the :cpu-width training step (batch 32) under several XLA:CPU runtime options, each in
# its own process (XLA_FLAGS is read once per process), two rounds A B A B (issue 20; the table
# is in docs/results.md, "XLA:CPU runtime options, second sweep").
#   bash bench/xla_flags_cpu.sh [method]        # from the repository root; default dsvae
# Prints one line per (round, option, lowering): bench/train_step_cpu.py's JSON or its error.
set -u
cd "$(dirname "$0")/.."
METHOD=${1:-dsvae}
NAMES=(none xnn_greedy xnn_greedy_slinky conc_sched xnn_conv_xla ynn_conv_xla ynn_elt none_xla)
declare -A FLAGS=(
  [none]=""
  [xnn_greedy]="--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY"
  [xnn_greedy_slinky]="--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY_SLINKY"
  [conc_sched]="--xla_cpu_enable_concurrency_optimized_scheduler=true"
  [xnn_conv_xla]="--xla_cpu_experimental_xnn_fusion_type=individual_convolution"
  [ynn_conv_xla]="--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
  [ynn_elt]="--xla_cpu_experimental_ynn_fusion_type=eltwise,reduce"
  [none_xla]=""
)
for round in 1 2; do
  for name in "${NAMES[@]}"; do
    lowering=gemm; [[ $name == *_xla ]] && lowering=xla
    out=$(XLA_FLAGS="${FLAGS[$name]}" timeout 600 python bench/train_step_cpu.py \
          --method="$METHOD" --variant=cpu --width 0.25 --conv_lowering=$lowering --repeats 5 \
          2>&1 | tail -1)
    echo "round=$round name=$name lowering=$lowering $out"
  done
done
