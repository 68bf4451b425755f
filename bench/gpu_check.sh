#!/usr/bin/env bash
# bench/gpu_check.sh: the first checks on a machine with a GPU (issue 21, item 6), in one command
# of at most ~8 minutes on one GPU, that ends with one JSON object on stdout.
#
#   1. bench/throughput.py for every paper method (dsvae, cdsvae, spyl, dbse, rwae) at batch 128
#      and 256, float32 and bfloat16 (`:default` width, synthetic Sprites batches);
#   2. a ~5-minute C-DSVAE Sprites `:default` training run (experiments/cdsvae_sprites.py) with
#      its judged-accuracy curve (eval.judge_every -> `judge_curve/...` records, split "eval",
#      in WORKDIR/train/metrics.jsonl) and a final judge_generation evaluation; its step count is
#      planned from the C-DSVAE batch-128 float32 step time of part 1 and the measured host
#      data-loading time, and `timeout` bounds it. A short Sprites judge (--mode=judge,
#      GPU_CHECK_JUDGE_STEPS steps) is trained first; Sprites is prepared from the LPC sheets;
#   3. the JSON: device, jax version, the throughput rows, the training curve and the final
#      judged accuracy, the wall time of each part. Logs go to stderr (a line per part) and
#      to files in the logs folder.
#
# One-time setup on the GPU machine (it has no internet: install from a wheel cache or an image
# that has them; this script never downloads anything), from the repository root:
#     pip install -e . "jax[cuda12]"
#
# Usage (from anywhere; it runs in the repository root):
#     bash bench/gpu_check.sh                          # the GPU check; refuses without a GPU
#     bash bench/gpu_check.sh --small                  # tiny: smoke configs, CPU, a few minutes
# Options (or the environment variable in brackets):
#     --small                [GPU_CHECK_SMALL=1]  `:smoke` configs, batch 8, dsvae only in the
#                                                 throughput part, 8 training steps; runs on CPU
#     --workdir=DIR          [GPU_CHECK_WORKDIR]  data, judge, run, XLA cache (default
#                                                 ${TMPDIR:-/tmp}/seqdis_gpu_check[_small]);
#                                                 prepared data and the XLA cache are reused
#     --json=PATH            [GPU_CHECK_JSON]     also write the JSON there
#     --source_dir=DIR       [GPU_CHECK_SPRITES_SOURCE]  the LPC sheets (default: the first of
#                                                 ../shared/data/sprites_lpc, shared/data/sprites_lpc)
#     --data_dir=DIR         [GPU_CHECK_DATA_DIR] a TFDS data dir that already holds the prepared
#                                                 Sprites build (then no sheets are needed)
# With $OUT set, the JSON goes to $OUT/gpu_check.json and the logs to $OUT/gpu_check_logs/
# (else to WORKDIR/logs/). Tuning, all optional (GPU defaults; --small has its own):
#     GPU_CHECK_METHODS=dsvae,cdsvae,spyl,dbse,rwae  GPU_CHECK_BATCHES=128,256
#     GPU_CHECK_DTYPES=float32,bfloat16 (bf16_products too: bench/throughput.py --dtype)
#     GPU_CHECK_TP_STEPS=10  GPU_CHECK_TP_WARMUP=2
#     GPU_CHECK_BUDGET_S=470   the whole check (parts are cut to fit it)
#     GPU_CHECK_THROUGHPUT_S=120  part 1, shared by the dtypes (rows it leaves out are listed
#                              as "no measurement"; a rerun with the warm XLA cache is faster)
#     GPU_CHECK_JUDGE_STEPS=1500  GPU_CHECK_JUDGE_S=90  the judge's steps and time limit
#     GPU_CHECK_TRAIN_S=300    the training run's wall time, compile and evaluations included
#     GPU_CHECK_TRAIN_OVERHEAD_S=90  of which not training steps (startup, compile, curve, eval)
#     GPU_CHECK_TRAIN_STEPS, GPU_CHECK_JUDGE_EVERY  fix the step plan instead
#     PYTHON=...               the interpreter (default: python, else python3, from PATH)
#     GPU_CHECK_ALLOW_CPU=1    the full-size path without a GPU (tests its wiring; very slow)
#     GPU_CHECK_XLA_CACHE=DIR  the persistent XLA compilation cache ('' disables; default
#                              WORKDIR/xla_cache: a rerun compiles faster, and its compile_s
#                              then measures cache loads: the JSON says whether it was warm)
# Exit status: 0 every part ran clean; 1 the JSON lists problems (a part failed or timed out);
# 2 it could not start (no python/jax/GPU, no Sprites sheets or data), with one `error:` line
# on stderr (and a JSON with "error" where a JSON path is known).

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

SMALL="${GPU_CHECK_SMALL:-0}"
WORKDIR="${GPU_CHECK_WORKDIR:-}"
JSON_PATH="${GPU_CHECK_JSON:-}"
SOURCE_DIR="${GPU_CHECK_SPRITES_SOURCE:-}"
DATA_DIR="${GPU_CHECK_DATA_DIR:-}"
for arg in "$@"; do
  case "$arg" in
    --small) SMALL=1 ;;
    --workdir=*) WORKDIR="${arg#*=}" ;;
    --json=*) JSON_PATH="${arg#*=}" ;;
    --source_dir=*) SOURCE_DIR="${arg#*=}" ;;
    --data_dir=*) DATA_DIR="${arg#*=}" ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$arg' (see bash bench/gpu_check.sh --help)" >&2; exit 2 ;;
  esac
done
[[ "$SMALL" == "1" || "$SMALL" == "true" ]] && SMALL=1 || SMALL=0

now() { date +%s.%N; }
T_START="$(now)"
elapsed() { awk -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[gpu_check %4ss] %s\n' "$(elapsed)" "$*" >&2; }
min() { if (( $1 < $2 )); then echo "$1"; else echo "$2"; fi; }
max() { if (( $1 > $2 )); then echo "$1"; else echo "$2"; fi; }

# ---- settings --------------------------------------------------------------------------------
if (( SMALL )); then
  VARIANT=smoke
  METHODS="${GPU_CHECK_METHODS:-dsvae}"
  BATCHES="${GPU_CHECK_BATCHES:-8}"
  DTYPES="${GPU_CHECK_DTYPES:-float32,bfloat16}"
  TP_STEPS="${GPU_CHECK_TP_STEPS:-2}"
  TP_WARMUP="${GPU_CHECK_TP_WARMUP:-1}"
  BUDGET_S="${GPU_CHECK_BUDGET_S:-900}"
  THROUGHPUT_S="${GPU_CHECK_THROUGHPUT_S:-400}"
  JUDGE_STEPS="${GPU_CHECK_JUDGE_STEPS:-4}"
  JUDGE_S="${GPU_CHECK_JUDGE_S:-240}"
  TRAIN_S="${GPU_CHECK_TRAIN_S:-300}"
  TRAIN_OVERHEAD_S="${GPU_CHECK_TRAIN_OVERHEAD_S:-60}"
  TRAIN_STEPS="${GPU_CHECK_TRAIN_STEPS:-8}"
  JUDGE_EVERY="${GPU_CHECK_JUDGE_EVERY:-2}"
  LOG_EVERY=2  # the :smoke config's train.log_every
  CHARACTERS=2  # data_prep.sprites --characters=2 -> sprites_subset_2, the :smoke build
  TFDS_NAME=sprites_subset_2
  LOADER_BATCH=4
  DEFAULT_WORKDIR="${TMPDIR:-/tmp}/seqdis_gpu_check_small"
else
  VARIANT=default
  METHODS="${GPU_CHECK_METHODS:-dsvae,cdsvae,spyl,dbse,rwae}"
  BATCHES="${GPU_CHECK_BATCHES:-128,256}"
  DTYPES="${GPU_CHECK_DTYPES:-float32,bfloat16}"
  TP_STEPS="${GPU_CHECK_TP_STEPS:-10}"
  TP_WARMUP="${GPU_CHECK_TP_WARMUP:-2}"
  BUDGET_S="${GPU_CHECK_BUDGET_S:-470}"
  THROUGHPUT_S="${GPU_CHECK_THROUGHPUT_S:-120}"
  JUDGE_STEPS="${GPU_CHECK_JUDGE_STEPS:-1500}"
  JUDGE_S="${GPU_CHECK_JUDGE_S:-90}"
  TRAIN_S="${GPU_CHECK_TRAIN_S:-300}"
  TRAIN_OVERHEAD_S="${GPU_CHECK_TRAIN_OVERHEAD_S:-90}"
  TRAIN_STEPS="${GPU_CHECK_TRAIN_STEPS:-}"
  JUDGE_EVERY="${GPU_CHECK_JUDGE_EVERY:-}"
  LOG_EVERY=50  # the :default config's train.log_every
  CHARACTERS=""
  TFDS_NAME=sprites
  LOADER_BATCH=128  # the run's batch
  DEFAULT_WORKDIR="${TMPDIR:-/tmp}/seqdis_gpu_check"
fi
TRAIN_CONFIG="experiments/cdsvae_sprites.py:$VARIANT"
WORKDIR="$(mkdir -p "${WORKDIR:-$DEFAULT_WORKDIR}" && cd "${WORKDIR:-$DEFAULT_WORKDIR}" && pwd)" || {
  echo "error: cannot create the workdir ${WORKDIR:-$DEFAULT_WORKDIR}" >&2; exit 2; }
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  LOGS="$OUT/gpu_check_logs"
  OUT_JSON="$OUT/gpu_check.json"
else
  LOGS="$WORKDIR/logs"
  OUT_JSON=""
fi
rm -rf "$LOGS" && mkdir -p "$LOGS"
STATE="$WORKDIR/state.tsv"  # key<TAB>value lines the report reads
: > "$STATE"
put() { printf '%s\t%s\n' "$1" "$2" >> "$STATE"; }
XLA_CACHE="${GPU_CHECK_XLA_CACHE-$WORKDIR/xla_cache}"
if [[ -n "$XLA_CACHE" ]]; then
  if [[ -d "$XLA_CACHE" && -n "$(ls -A "$XLA_CACHE" 2>/dev/null)" ]]; then put xla_cache_warm true
  else put xla_cache_warm false; fi
  mkdir -p "$XLA_CACHE"
  export JAX_COMPILATION_CACHE_DIR="$XLA_CACHE"
fi
put xla_cache "$XLA_CACHE"
put small "$SMALL"; put workdir "$WORKDIR"; put logs "$LOGS"; put variant "$VARIANT"
put methods "$METHODS"; put batches "$BATCHES"; put dtypes "$DTYPES"
put tp_steps "$TP_STEPS"; put tp_warmup "$TP_WARMUP"; put budget_s "$BUDGET_S"
put train_config "$TRAIN_CONFIG"; put judge_steps "$JUDGE_STEPS"

# ---- python, jax and the device -------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if command -v python >/dev/null 2>&1; then PYTHON=python
  elif command -v python3 >/dev/null 2>&1; then PYTHON=python3
  else echo "error: no python on PATH; set up the machine first: pip install -e . \"jax[cuda12]\"" >&2; exit 2
  fi
fi
HELPER="$WORKDIR/gpu_check_helper.py"
cat > "$HELPER" <<'PYEOF'
"""Helpers of bench/gpu_check.sh (written by it; do not edit here)."""
import json
import math
import os
import platform
import sys
import time


def device():
    import jax
    try:
        import jaxlib
        jaxlib_version = getattr(jaxlib, "__version__", None) or jaxlib.version.__version__
    except Exception:
        jaxlib_version = None
    devices = jax.devices()
    info = dict(jax=jax.__version__, jaxlib=jaxlib_version, python=platform.python_version(),
                backend=jax.default_backend(), platform=devices[0].platform,
                device_kind=devices[0].device_kind, device_count=len(devices),
                devices=[str(d) for d in devices][:8])
    import seqdis_jax  # noqa: F401  the package must import (pip install -e .)
    print(json.dumps(info))


def loader(config_arg, data_dir, batch_size, batches):
    """Host time of one training batch (grain, as the training loop reads it)."""
    import importlib
    path, _, variant = config_arg.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    config = module.get_config(variant or None)
    config.data.data_dir = data_dir
    from seqdis_jax.data import registry
    from seqdis_jax.data.pipeline import train_iterator
    data = registry.load(config.data, "train")
    batch_size = min(int(batch_size), len(data.source))
    iterator = train_iterator(data.source, batch_size, 0)
    next(iterator)
    start = time.perf_counter()
    for _ in range(int(batches)):
        next(iterator)
    ms = (time.perf_counter() - start) / int(batches) * 1e3
    print(json.dumps(dict(batch_size=batch_size, batches=int(batches),
                          ms_per_batch=round(ms, 2), train_sequences=len(data.source))))


def read_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def plan(throughput_dir, loader_json, window_s, overhead_s, log_every, fixed_steps,
         fixed_every):
    """num_steps and judge_every of the training run: the steps that fit the window after its
    overhead at max(device step, host batch) x 1.2, a multiple of judge_every (itself a
    multiple of log_every, ~10 curve points)."""
    log_every, window_s, overhead_s = int(log_every), float(window_s), float(overhead_s)
    step_ms = None
    for dtype in ("float32",):
        for row in read_jsonl(os.path.join(throughput_dir, f"throughput_{dtype}.jsonl")):
            if (row.get("method") == "cdsvae" and row.get("batch_size") == 128
                    and "error" not in row and step_ms is None):
                step_ms = row["step_ms_median"]
    loaded = read_json(loader_json) or {}
    loader_ms = loaded.get("ms_per_batch")
    assumed = step_ms is None
    device_ms = step_ms if step_ms is not None else 80.0  # no measurement: a cautious guess
    per_step_ms = max(device_ms, loader_ms or 0.0) * 1.2 + 1.0
    steps = int(max(window_s - overhead_s, 0.0) * 1e3 / per_step_ms)
    every = max(log_every, (steps // 10) // log_every * log_every)
    steps = max(every, steps // every * every)
    out = dict(window_s=window_s, overhead_s=overhead_s, device_step_ms=step_ms,
               device_step_ms_assumed=assumed, loader_ms_per_batch=loader_ms,
               planned_ms_per_step=round(per_step_ms, 2), estimated_steps=steps,
               estimated_judge_every=every)
    if fixed_steps:
        steps = int(fixed_steps)
        every = int(fixed_every) if fixed_every else max(log_every, steps // 10)
    out.update(num_steps=steps, judge_every=every,
               fixed=bool(fixed_steps))
    print(json.dumps(out))


def _state(path):
    state = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            state[key] = value
    return state


def _num(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


ROW_FIELDS = ("method", "batch_size", "dtype", "step_ms_median", "sequences_per_s",
              "tflops_per_s", "flops_per_step", "compile_s", "params", "temp_mib", "error")


def dumps(x, level=0):
    """JSON with nested containers indented and every flat object or list on one line (a
    throughput row, a curve point), so the whole report stays short."""
    pad = " " * (level + 1)
    nested = isinstance(x, (dict, list)) and any(
        isinstance(v, (dict, list)) and v for v in (x.values() if isinstance(x, dict) else x))
    if isinstance(x, dict) and nested:
        items = [f"{pad}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad[:-1] + "}"
    if isinstance(x, list) and nested:
        items = [pad + dumps(v, level + 1) for v in x]
        return "[\n" + ",\n".join(items) + "\n" + pad[:-1] + "]"
    return json.dumps(x)


def report(state_path, *json_paths):
    s = _state(state_path)
    workdir, logs = s["workdir"], s["logs"]
    problems = [line for key, line in s.items() if key.startswith("problem:")]

    # Part 1: throughput rows (full records in logs/throughput_full.json).
    rows, full = [], []
    for dtype in s["dtypes"].split(","):
        got = read_jsonl(os.path.join(logs, f"throughput_{dtype}.jsonl"))
        full += got
        done = {(r.get("method"), r.get("batch_size")) for r in got}
        for r in got:
            rows.append({k: r[k] for k in ROW_FIELDS if k in r} | {"dtype": r.get("dtype", dtype)})
        for method in s["methods"].split(","):
            for batch in s["batches"].split(","):
                if (method, int(batch)) not in done:
                    reason = s.get(f"throughput_{dtype}_status", "not run")
                    rows.append(dict(method=method, batch_size=int(batch), dtype=dtype,
                                     error=f"no measurement ({reason})"))
    with open(os.path.join(logs, "throughput_full.json"), "w") as f:
        json.dump(full, f, indent=1)
    missing = [r for r in rows if "error" in r]
    if missing:
        problems.append(f"throughput: {len(missing)} of {len(rows)} rows without a measurement")

    # Judge.
    judge_meta = read_json(os.path.join(workdir, "judge", "judge.json")) or {}
    judge = dict(workdir=os.path.join(workdir, "judge"), steps=judge_meta.get("step"),
                 test_accuracy=judge_meta.get("test_accuracy"),
                 train_seconds=judge_meta.get("train_seconds"),
                 status=s.get("judge_status"),
                 min_accuracy=((read_json(os.path.join(workdir, "train", "config.json")) or {})
                               .get("judge", {}).get("min_accuracy")))

    # Part 2: the training run's curve and its final judged accuracy.
    metrics = read_jsonl(os.path.join(workdir, "train", "metrics.jsonl"))
    prefix = "judge_curve/"
    curve = [{"step": int(r["step"])} | {k[len(prefix):]: r[k] for k in r if k.startswith(prefix)}
             for r in metrics if r.get("split") == "eval" and any(k.startswith(prefix) for k in r)]
    train_rows = [r for r in metrics if r.get("split") == "train"]
    test_rows = [r for r in metrics if r.get("split") == "test"]
    key = "fix_dynamics/motion/accuracy"
    if test_rows:
        t = test_rows[-1]
        final = dict(source="judge_generation (final evaluation, every test sequence)",
                     step=int(t["step"]), judged_accuracy=t.get(key), key=key,
                     metrics={k: v for k, v in t.items() if k not in ("step", "split") and (
                         k.startswith("fix_dynamics/") or k.endswith("accuracy")
                         or k == "train_seconds")})
    elif curve:
        last = curve[-1]
        final = dict(source="judge_curve (last point; the run ended before its final "
                            "evaluation)", step=last["step"], judged_accuracy=last.get(key),
                     key="judge_curve/" + key,
                     metrics={k: v for k, v in last.items() if k != "step"})
    else:
        final = dict(source=None, step=None, judged_accuracy=None, key=key, metrics={})
    if final["judged_accuracy"] is None:
        problems.append(f"training: no judged {key} (judge below judge.min_accuracy on motion, "
                        "or the run produced no curve)")
    train = dict(
        config=s["train_config"], workdir=os.path.join(workdir, "train"),
        command=s.get("train_command"), plan=read_json(os.path.join(logs, "train_plan.json")),
        rc=_num(s.get("train_rc")), timed_out=s.get("train_timed_out") == "true",
        time_limit_s=_num(s.get("train_time_limit_s")),
        steps_reached=max((int(r["step"]) for r in train_rows), default=0),
        steps_per_sec_last=train_rows[-1].get("steps_per_sec") if train_rows else None,
        loss_last=train_rows[-1].get("loss") if train_rows else None,
        curve=curve, final=final)

    wall = {k[len("wall:"):]: _num(v) for k, v in s.items() if k.startswith("wall:")}
    device_info = read_json(os.path.join(logs, "device.json")) or {}
    gpus = [line for line in s.get("nvidia_smi", "").split(";") if line.strip()]
    result = dict(
        check="seqdis_jax bench/gpu_check.sh",
        ok=not problems, problems=problems, small=s["small"] == "1",
        device=(gpus[0].split(",")[0].strip() if gpus else device_info.get("device_kind")),
        nvidia_smi=gpus, jax_version=device_info.get("jax"),
        jaxlib_version=device_info.get("jaxlib"), python=device_info.get("python"),
        jax_backend=device_info.get("backend"), jax_device_kind=device_info.get("device_kind"),
        jax_device_count=device_info.get("device_count"), git=s.get("git"),
        wall_s=wall,
        throughput=dict(config_variant=s["variant"], timed_steps=int(s["tp_steps"]),
                        warmup_steps=int(s["tp_warmup"]), frames=8,
                        xla_cache=s.get("xla_cache") or None,
                        xla_cache_warm=s.get("xla_cache_warm") == "true", rows=rows),
        data=read_json(os.path.join(logs, "loader.json")),
        judge=judge, train=train, logs=logs)
    text = dumps(result)
    for path in json_paths:
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text + "\n")
    print(text)
    return 0 if not problems else 1


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "device":
        device()
    elif command == "loader":
        loader(*args)
    elif command == "plan":
        plan(*args)
    elif command == "report":
        try:
            status = report(*args)
        except Exception as e:  # still one JSON object on stdout, naming what went wrong
            text = json.dumps(dict(check="seqdis_jax bench/gpu_check.sh", ok=False,
                                   error=f"the report failed: {e!r}; see the logs"))
            for path in args[1:]:
                if path:
                    with open(path, "w") as f:
                        f.write(text + "\n")
            print(text)
            status = 1
        sys.exit(status)
    else:
        sys.exit(f"unknown helper command {command}")
PYEOF

fail_early() {  # one error line, a JSON with the error where a path is known, exit 2
  echo "error: $1" >&2
  local text
  text="$(printf '{"check": "seqdis_jax bench/gpu_check.sh", "ok": false, "error": %s}' \
    "$("$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1" 2>/dev/null || echo '"see stderr"')")"
  for path in "$OUT_JSON" "$JSON_PATH"; do [[ -n "$path" ]] && echo "$text" > "$path"; done
  echo "$text"
  exit 2
}

GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [[ -n "$GIT_REV" ]]; then
  [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && GIT_REV="$GIT_REV (modified)"
  put git "$GIT_REV"
fi
NVSMI=""
if command -v nvidia-smi >/dev/null 2>&1; then
  NVSMI="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    | tr '\n' ';')"
fi
put nvidia_smi "$NVSMI"

T0="$(now)"
log "mode: $( (( SMALL )) && echo "small (smoke configs)" || echo "GPU") | workdir $WORKDIR | logs $LOGS"
if ! "$PYTHON" "$HELPER" device > "$LOGS/device.json" 2> "$LOGS/device.log"; then
  fail_early "python/jax/seqdis_jax do not import ($(tail -n 1 "$LOGS/device.log")); one-time setup from the repository root: pip install -e . \"jax[cuda12]\""
fi
BACKEND="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["backend"])' "$LOGS/device.json")"
KIND="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_kind"])' "$LOGS/device.json")"
put "wall:setup" "$(since "$T0")"
log "jax backend $BACKEND ($KIND)${NVSMI:+; nvidia-smi: ${NVSMI%;}}"
# GPU_CHECK_ALLOW_CPU=1 runs the full-size path without a GPU (to test its wiring; slow).
if (( ! SMALL )) && [[ "$BACKEND" != "gpu" && "$BACKEND" != "cuda" ]] \
    && [[ "${GPU_CHECK_ALLOW_CPU:-0}" != "1" ]]; then
  fail_early "jax sees no GPU (backend '$BACKEND', device '$KIND'${NVSMI:+; nvidia-smi lists ${NVSMI%;}}): install the CUDA build, pip install -e . \"jax[cuda12]\", or run with --small for the CPU check"
fi

# ---- Sprites data: prepared in the background (CPU only) while part 1 runs -----------------
if [[ -z "$DATA_DIR" ]]; then DATA_DIR="$WORKDIR/tfds"; fi
mkdir -p "$DATA_DIR" && DATA_DIR="$(cd "$DATA_DIR" && pwd)"
if [[ -z "$SOURCE_DIR" ]]; then
  for candidate in "$ROOT/../shared/data/sprites_lpc" "$ROOT/shared/data/sprites_lpc"; do
    if [[ -d "$candidate" ]]; then SOURCE_DIR="$(cd "$candidate" && pwd)"; break; fi
  done
fi
if [[ -z "$SOURCE_DIR" || ! -d "$SOURCE_DIR" ]]; then
  if [[ ! -d "$DATA_DIR/$TFDS_NAME/1.0.0" ]]; then
    fail_early "no Sprites LPC sheets (looked in ${SOURCE_DIR:-../shared/data/sprites_lpc and shared/data/sprites_lpc}) and no prepared $TFDS_NAME in $DATA_DIR; pass --source_dir=DIR (the sheets) or --data_dir=DIR (a prepared TFDS dir)"
  fi
  SOURCE_DIR=""
fi
put data_dir "$DATA_DIR"; put source_dir "$SOURCE_DIR"
(
  t="$(now)"
  rc=0
  if [[ -n "$SOURCE_DIR" ]]; then
    JAX_PLATFORMS=cpu "$PYTHON" -m data_prep.sprites --source_dir="$SOURCE_DIR" \
      --data_dir="$DATA_DIR" ${CHARACTERS:+--characters=$CHARACTERS} > "$LOGS/data_prep.log" 2>&1
    rc=$?
  fi
  echo "$rc" > "$WORKDIR/data_prep.rc"
  put "wall:data_prep" "$(since "$t")"
  if (( rc == 0 )); then
    t="$(now)"
    JAX_PLATFORMS=cpu "$PYTHON" "$HELPER" loader "$TRAIN_CONFIG" "$DATA_DIR" "$LOADER_BATCH" \
      "$( (( SMALL )) && echo 4 || echo 20 )" > "$LOGS/loader.json" 2> "$LOGS/loader.log"
    put "wall:data_loader_timing" "$(since "$t")"
  fi
) &
DATA_PID=$!

# ---- part 1: throughput ----------------------------------------------------------------------
T1="$(now)"
IFS=, read -r -a DTYPE_LIST <<< "$DTYPES"
n_left=${#DTYPE_LIST[@]}
COMPILER_FLAGS=()
# XLA:CPU compiles ~3x faster at backend optimisation level 0 (tests/test_bench.py); CPU only.
[[ "$BACKEND" == "cpu" ]] && COMPILER_FLAGS=(--compiler_option=xla_backend_optimization_level=0)
for dtype in "${DTYPE_LIST[@]}"; do
  spent="$(awk -v a="$T1" -v b="$(now)" 'BEGIN { printf "%d", b - a }')"
  limit=$(( (THROUGHPUT_S - spent) / n_left ))
  limit="$(min "$limit" $(( BUDGET_S - $(elapsed) - 60 )))"
  n_left=$(( n_left - 1 ))
  if (( limit < 10 )); then
    put "throughput_${dtype}_status" "skipped: the time budget was spent"
    log "throughput $dtype: skipped (no time left)"
    continue
  fi
  t="$(now)"
  log "throughput $dtype: methods $METHODS, batches $BATCHES (limit ${limit}s)"
  timeout -k 10 "$limit" "$PYTHON" bench/throughput.py --methods="$METHODS" --batch_sizes="$BATCHES" \
    --config_variant="$VARIANT" --dtype="$dtype" --steps="$TP_STEPS" --warmup="$TP_WARMUP" \
    ${COMPILER_FLAGS[@]+"${COMPILER_FLAGS[@]}"} > "$LOGS/throughput_$dtype.jsonl" 2> "$LOGS/throughput_$dtype.log"
  rc=$?
  put "wall:throughput_$dtype" "$(since "$t")"
  case $rc in
    0) put "throughput_${dtype}_status" "ok" ;;
    124|137) put "throughput_${dtype}_status" "stopped at its ${limit}s time limit"
             put "problem:throughput_$dtype" "throughput $dtype: stopped at its ${limit}s limit" ;;
    *) put "throughput_${dtype}_status" "exit status $rc"
       put "problem:throughput_$dtype" "throughput $dtype: exit status $rc (see $LOGS/throughput_$dtype.log)" ;;
  esac
  log "throughput $dtype: $(grep -c '^{' "$LOGS/throughput_$dtype.jsonl") rows, exit $rc, $(since "$t")s"
done
put "wall:throughput" "$(since "$T1")"

# ---- data ready? -----------------------------------------------------------------------------
t="$(now)"
wait "$DATA_PID"
put "wall:data_wait" "$(since "$t")"
if [[ "$(cat "$WORKDIR/data_prep.rc" 2>/dev/null)" != "0" ]]; then
  put "problem:data" "data_prep.sprites failed: $(tail -n 1 "$LOGS/data_prep.log" 2>/dev/null)"
  log "data preparation failed: $(tail -n 1 "$LOGS/data_prep.log" 2>/dev/null)"
fi
log "data: $DATA_DIR/$TFDS_NAME; host batch time $(cat "$LOGS/loader.json" 2>/dev/null || echo '?')"

COMMON=(--config="$TRAIN_CONFIG" --config.data.data_dir="$DATA_DIR"
        --config.judge.workdir="$WORKDIR/judge" --config.judge.train_if_missing=True
        --config.judge.train.num_steps="$JUDGE_STEPS"
        --config.judge.train.checkpoint_every="$JUDGE_STEPS")

# ---- the judge -------------------------------------------------------------------------------
t="$(now)"
if [[ -f "$WORKDIR/judge/judge.json" ]]; then
  put judge_status "reused (already in the workdir)"
  log "judge: reusing $WORKDIR/judge"
else
  limit="$(min "$JUDGE_S" $(( BUDGET_S - $(elapsed) - 60 )))"
  limit="$(max "$limit" 10)"
  log "judge: $JUDGE_STEPS steps (limit ${limit}s)"
  timeout -k 10 "$limit" "$PYTHON" -m experiments.main --mode=judge "${COMMON[@]}" \
    > "$LOGS/judge.log" 2>&1
  rc=$?
  case $rc in
    0) put judge_status "trained" ;;
    124|137) put judge_status "stopped at its ${limit}s limit (the training run trains it)"
             put "problem:judge" "judge: stopped at its ${limit}s limit" ;;
    *) put judge_status "exit status $rc"
       put "problem:judge" "judge: exit status $rc: $(tail -n 1 "$LOGS/judge.log")" ;;
  esac
  log "judge: exit $rc, $(since "$t")s"
fi
put "wall:judge" "$(since "$t")"

# ---- part 2: the training run ----------------------------------------------------------------
remaining=$(( BUDGET_S - $(elapsed) - 10 ))
window="$(min "$TRAIN_S" "$remaining")"
"$PYTHON" "$HELPER" plan "$LOGS" "$LOGS/loader.json" "$window" "$TRAIN_OVERHEAD_S" \
  "$LOG_EVERY" "$TRAIN_STEPS" "$JUDGE_EVERY" > "$LOGS/train_plan.json" 2> "$LOGS/train_plan.log"
read -r N J < <("$PYTHON" -c 'import json,sys; p=json.load(open(sys.argv[1]))
print(p["num_steps"], p["judge_every"])' "$LOGS/train_plan.json")
limit="$(min $(( window + 30 )) "$remaining")"
limit="$(max "$limit" 30)"
rm -rf "$WORKDIR/train"
TRAIN_CMD=("$PYTHON" -m experiments.main "${COMMON[@]}" --workdir="$WORKDIR/train"
           --config.train.num_steps="$N" --config.train.checkpoint_every="$N"
           --config.eval.judge_every="$J" --config.eval.mi_every=0
           "--config.eval.evaluators=(\"judge_generation\",)")
put train_command "${TRAIN_CMD[*]}"
put train_time_limit_s "$limit"
log "train: $TRAIN_CONFIG, $N steps, judged curve every $J (window ${window}s, limit ${limit}s)"
t="$(now)"
timeout -k 10 "$limit" "${TRAIN_CMD[@]}" > "$LOGS/train.log" 2>&1
rc=$?
put "wall:train" "$(since "$t")"
put train_rc "$rc"
if (( rc == 124 || rc == 137 )); then
  put train_timed_out true
  put "problem:train" "training: stopped at its ${limit}s limit (the curve is read as far as it got)"
elif (( rc != 0 )); then
  put "problem:train" "training: exit status $rc: $(tail -n 1 "$LOGS/train.log")"
fi
log "train: exit $rc, $(since "$t")s"
cp "$WORKDIR/train/metrics.jsonl" "$LOGS/train_metrics.jsonl" 2>/dev/null
cp "$WORKDIR/judge/judge.json" "$LOGS/judge.json" 2>/dev/null

# ---- part 3: the JSON ------------------------------------------------------------------------
put "wall:total" "$(since "$T_START")"
log "total $(since "$T_START")s; JSON on stdout${OUT_JSON:+ and in $OUT_JSON}${JSON_PATH:+ and in $JSON_PATH}"
"$PYTHON" "$HELPER" report "$STATE" "$WORKDIR/gpu_check.json" "$OUT_JSON" "$JSON_PATH"
