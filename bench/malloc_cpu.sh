#!/usr/bin/env bash
# Our training step with glibc's malloc defaults against the tunables the launchers restart
# with (seqdis_jax/cpu_malloc.py), A B A B, one JSON line per run (bench/train_step_cpu.py:
# median step, page faults and system time per step). Usage, from the repository root:
#   bash bench/malloc_cpu.sh [methods (dsvae,cdsvae,dbse)] [rounds (2)]
set -euo pipefail
TUNABLES=$(python -c "from seqdis_jax import cpu_malloc; print(cpu_malloc.TUNABLES)")
for round in $(seq "${2:-2}"); do
  for method in $(echo "${1:-dsvae,cdsvae,dbse}" | tr , ' '); do
    for width in 0.25 1.0; do
      [ "$width" = 1.0 ] && repeats=3 || repeats=6
      for malloc in default tuned; do
        if [ "$malloc" = tuned ]; then env=(GLIBC_TUNABLES="$TUNABLES"); else env=(); fi
        env -u GLIBC_TUNABLES "${env[@]}" python bench/train_step_cpu.py --method="$method" \
          --variant=cpu --width="$width" --repeats=$repeats 2>/dev/null | tail -1
      done
    done
  done
done
