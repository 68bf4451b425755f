"""Trains a sequential-disentanglement model (DSVAE, C-DSVAE, SPYL, DBSE, R-WAE) on a dataset
as an experiment config file says, then evaluates it; or re-evaluates a trained run, or trains
the dataset's judge classifier.

Usage:
  python -m experiments.main --config=experiments/<name>.py[:variant] --workdir=DIR [flags]
  python -m experiments.main --list      every config file, its variants and the methods

Example (the Quickstart: DSVAE on moving shapes on a CPU, about 5 minutes, judge included):
  python -m experiments.main --config=experiments/shapes.py --workdir=runs/shapes

Flags:
  --config             an ml_collections config file, optionally `:variant`; override any field
                       with --config.a.b=value (unknown fields and wrong types are refused).
  --workdir            where checkpoints, logs, metrics.json, PNG grids and config.json go.
                       A workdir with checkpoints is resumed. Optional with --mode=judge.
  --mode               train (train, then evaluate), eval (restore the latest checkpoint and
                       evaluate only) or judge (train the dataset's judge classifier into
                       config.judge.workdir and report its test accuracy per factor).
  --checkpoint         with --mode=eval: latest (default), best (the kept checkpoint ranked
                       best by config.train.best_metric) or a step number. A checkpoint other
                       than the latest writes metrics_step<N>.json, leaving metrics.json as is.
  --multihost          call jax.distributed.initialize() first (one process per host on a
                       TPU pod slice or a multi-node GPU cluster). Cloud TPU and SLURM give
                       the coordinator, process count and index; elsewhere pass
                       --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
                       Every process runs the same command.
  --list               print the config files, their variants and the methods; then exit.
  --helpfull           every flag, absl's logging flags too.

Judges: a relative config.judge.workdir (the configs set judges/<dataset>) is taken from the
parent of --workdir, wherever the command runs: --workdir=runs/shapes uses runs/judges/shapes,
--workdir=/tmp/x/shapes uses /tmp/x/judges/shapes. --mode=judge without --workdir takes it from
the current directory. config.json records the absolute path.

The devices (all of every process by default) form the mesh of config.mesh
(seqdis_jax/parallel.py): config.data.batch_size is the global batch, split over them.
Config files are Python and are executed: load only config files you trust.
"""

from __future__ import annotations

import os
import re
import sys
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_dict, config_flags

from seqdis_jax import cpu_malloc, errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and outputs.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "judge"], "What to run.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "--mode=eval: 'latest', 'best' or a step number.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (multi-host TPU/GPU runs).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "--multihost: host:port of process 0 (default: detected "
    "from the cluster, e.g. Cloud TPU or SLURM, or $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "--multihost: number of processes (default: detected).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "--multihost: this process's index (default: detected).")
# --list is read by parse_flags before absl parses (it needs no --config); it is no absl flag,
# so that experiments.reproduce (whose --list lists its tables) can be imported beside this.
flags.mark_flags_as_required(["config"])


def configure_jax(multihost: bool = False, **distributed) -> None:
    """Process-wide JAX settings of the launcher.

    Non-partitionable threefry: with jax 0.10's default (partitionable) threefry, XLA:CPU spends
    ~1 s compiling each random initializer (measured: DSVAE init 17 s vs 6 s at smoke width).
    Our random draws are small, so the partitionable layout buys nothing.
    With `multihost`, joins the other processes of the job (jax.distributed.initialize).
    """
    import jax

    if multihost:  # before any other JAX call; unset arguments are detected from the cluster
        jax.distributed.initialize(**distributed)
    jax.config.update("jax_threefry_partitionable", False)
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO


def _prepare_workdir(workdir: str, mode: str) -> str:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if mode == "eval" and not os.path.isdir(workdir):
        raise errors.UserInputError(
            f"--workdir {workdir} does not exist; --mode=eval needs the workdir of a trained run."
        )
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise errors.UserInputError(f"--workdir {workdir} is a file, not a directory.")
    if not os.path.isdir(workdir):
        parent = os.path.dirname(workdir)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK):
            raise errors.UserInputError(
                f"--workdir {workdir} cannot be created: {parent} is not writable."
            )
    elif not os.access(workdir, os.W_OK | os.X_OK):
        raise errors.UserInputError(
            f"--workdir {workdir} is not writable; pass a writable directory.")
    return workdir


def _check_train_split(config, train_data) -> None:
    """A batch must fit in the training split (None: a generated one, checked by its run)."""
    if train_data is not None and config.data.batch_size > len(train_data.source):
        raise errors.UserInputError(
            f"config.data.batch_size={config.data.batch_size} is larger than the "
            f"{len(train_data.source)} records of the 'train' split of dataset "
            f"{config.data.get('tfds_name', '') or config.data.name!r}; lower "
            "config.data.batch_size.")


def _check_existing_judge(config, test_data) -> None:
    """A judge already in config.judge.workdir must fit this data before training starts
    (it is only read when the evaluators run); a missing one is trained or reported then."""
    from seqdis_jax import judge

    judge_dir = os.path.abspath(config.judge.workdir)
    metadata = judge.read_metadata(judge_dir)
    if metadata is not None:
        judge.check_compatible(metadata, config, test_data, judge_dir)


def resolve_judge_dir(judge_dir: str, workdir: str | None) -> str:
    """config.judge.workdir as an absolute path: a relative one is taken from the parent of
    `workdir` (runs/x -> runs/judges/...), or from the current directory without a workdir, so
    the judge a run uses does not depend on where the command runs. Absolute paths (and '',
    left to the config checks) are returned unchanged."""
    path = os.path.expanduser(judge_dir)
    if not path or os.path.isabs(path):
        return path
    base = (os.path.dirname(os.path.abspath(os.path.expanduser(workdir))) if workdir
            else os.getcwd())
    return os.path.normpath(os.path.join(base, path))


def run(config, workdir: str, mode: str, checkpoint: str = "latest") -> dict:
    """Validates everything, then trains and/or evaluates. Nothing is written before the
    checks pass."""
    from seqdis_jax import configuration, evaluators, judge, parallel, train
    from seqdis_jax.data import registry

    config.judge.workdir = resolve_judge_dir(config.judge.workdir, workdir)  # saved resolved
    configuration.validate(config)
    mesh = parallel.mesh_from_config(config)  # the devices can split the batches
    parallel.check_batch_size(config.data.batch_size, mesh)
    if mode == "judge":
        parallel.check_batch_size(config.judge.batch_size, mesh)
        registry.load(config.data, "test")  # unprepared data: one message with the command
        _prepare_workdir(config.judge.workdir, "train")
        return judge.train_judge(config)
    if not workdir:
        raise errors.UserInputError(f"--mode={mode} needs --workdir=DIR.")
    workdir = _prepare_workdir(workdir, mode)
    test_data = registry.load(config.data, "test")  # before anything is written to the workdir
    if mode == "train":  # an empty or damaged training split too, where opening it is cheap
        _check_train_split(config, registry.preflight(config.data, "train"))
    train.batch_video_shape(config, test_data)  # sequences the model cannot take
    try:  # the evaluators' needs, before a long training run ends in a refusal
        names = evaluators.select_evaluators(config.eval.evaluators, test_data,
                                             config.model.get("modality", "video"))
        evaluators.check_downstream_tasks(config, test_data)
    except ValueError as e:
        raise errors.UserInputError(str(e)) from None
    ranks_by_judge = config.train.get("best_metric", "").startswith(
        evaluators.JUDGE_CURVE_PREFIX + "/")
    if (any(evaluators.EVALUATORS[name].needs_judge for name in names)
            or config.eval.get("judge_every", 0) or ranks_by_judge):
        _check_existing_judge(config, test_data)
    configuration.check_workdir_compatible(config, workdir)
    if mode == "eval":
        return train.evaluate_checkpoint(config, workdir, checkpoint)
    os.makedirs(workdir, exist_ok=True)
    # Locked from before config.json is written until the evaluation after training is done
    # (fit takes the same lock again: it is re-entrant within a process). --mode=eval is not
    # locked: evaluating a kept checkpoint of a run that is still training is a normal use.
    import jax

    from seqdis_jax import workdir_lock

    with workdir_lock.held(workdir, enabled=jax.process_index() == 0):
        configuration.save_config(config, workdir)
        return train.train_and_evaluate(config, workdir)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that a bad flag (a config file that cannot be loaded, an
    override of a field the config lacks or of the wrong type, an unknown flag) stops with one
    `error: ...` line on stderr and exit status 2 instead of a traceback. --help / -h /
    --helpfull print the usage and --list the configs, with exit status 0, before any other
    flag is read (absl's --help exits 1, and --config is required otherwise)."""
    _print_help_or_list(argv)
    argv = [a for a in argv if not re.match(r"--?(no)?list(=|$)", a)]  # --list=false, --nolist
    try:
        rest = flags.FLAGS(argv)
        _CONFIG.value.get("method")  # a config file that failed to load raises here
        return rest
    except flags.Error as e:
        message = ("--config is required: pass --config=experiments/<name>.py[:variant] "
                   "(--list shows the config files and their variants, --help the usage)."
                   if "--config must have a value other than None" in str(e)
                   else _explain_flag_error(str(e), argv))
    except (AttributeError, KeyError, TypeError) as e:  # ml_collections: a missing field
        message = _unknown_field(argv) or (
            f"a --config override names no field of the config ({e!r}); fix the flag.")
    except OSError as e:  # ml_collections defers "no such config file" to the first access
        reason = str(e).strip().splitlines()[-1].strip()
        message = (f"--config={_config_arg(argv)}: the config file cannot be loaded ({reason}); "
                   f"pass an existing file, e.g. --config=experiments/shapes.py (paths are "
                   f"relative to {os.getcwd()}).")
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


_HELP_FLAGS = {"h": "short", "help": "short", "helpshort": "short", "?": "short",
               "helpfull": "full"}


def _print_help_or_list(argv: list[str]) -> None:
    """With a help flag or --list (before a `--`), prints the usage or the config listing and
    exits 0."""
    for arg in argv[1:]:
        if arg == "--":
            break
        name, _, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or value.lower() in ("false", "0"):
            continue
        if name in _HELP_FLAGS:
            text = __doc__.strip()
            if _HELP_FLAGS[name] == "full":
                text += "\n\nEvery flag:\n" + flags.FLAGS.get_help()
            _print_and_exit(text)
        if name == "list":
            from experiments import catalog

            _print_and_exit(catalog.listing())


def _print_and_exit(text: str) -> None:
    """Prints `text` and exits 0, also into a pipe closed early (`--list | head`)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


def _overrides(argv: list[str]) -> list[tuple[str, str]]:
    """(--config.a.b=v argument, 'a.b') of every config override on the command line."""
    out = []
    for arg in argv[1:]:
        match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
        if match:
            out.append((arg, match.group(1)))
    return out


def _config_arg(argv: list[str]) -> str | None:
    """The value of --config on the command line (--config=X or --config X)."""
    for i, arg in enumerate(argv[1:], 1):
        match = re.match(r"^--?config(?:=(.*))?$", arg)
        if match:
            return match.group(1) if match.group(1) is not None else (
                argv[i + 1] if i + 1 < len(argv) else None)
    return None


def _load_config(argv: list[str]):
    """The config that --config names, without its overrides (None when it does not load)."""
    path = _config_arg(argv)
    try:
        return (config_flags.config_flags.ConfigFileFlagParser("config").parse(path)
                if path else None)
    except Exception:  # the caller reports the flag error itself
        return None


def _unknown_field(argv: list[str]) -> str | None:
    """The message for the first override naming a field that the config lacks."""
    config = _load_config(argv)
    if config is None:
        return None
    for arg, path in _overrides(argv):
        node, parts = config, path.split(".")
        for i, part in enumerate(parts):
            if isinstance(node, config_dict.ConfigDict) and part in node:
                node = node[part]
                continue
            if not isinstance(node, config_dict.ConfigDict):
                return (f"{arg.split('=', 1)[0]}: config.{'.'.join(parts[:i])} is a "
                        f"{type(node).__name__} field, not a section; fix the flag.")
            section = "config." + ".".join(parts[:i]) if i else "the config"
            return (f"{arg.split('=', 1)[0]}: {section} has no field {part!r} (it has "
                    f"{', '.join(sorted(node.keys()))}); fix the spelling or drop the flag.")
    return None


def _explain_flag_error(message: str, argv: list[str]) -> str:
    """absl's message, made one line and given the fix where it lacks one."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if "Error whilst parsing config file" in message:  # the config file's own exception
        return f"--config={_config_arg(argv)}: {lines[-1]}"
    match = re.match(r"^flag --config\.([\w.]+)=", message)
    config = _load_config(argv) if match else None
    if config is not None:
        value = config
        for part in match.group(1).split("."):
            value = value.get(part) if isinstance(value, config_dict.ConfigDict) else None
        if value is not None:
            kind = type(value).__name__
            article = "an" if kind[0] in "aeiou" else "a"
            return (f"{lines[0]}; config.{match.group(1)} is {article} {kind} field "
                    f"(the config file sets {value!r}): pass a value of that type, e.g. "
                    f"--config.{match.group(1)}={value!r}.")
    return " ".join(lines)


def known_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(errors in what the user passed: exit 2, a run that failed midway: exit 1); each ends
    the command with its one-line message instead of a traceback."""
    from seqdis_jax.data.registry import NotPreparedError

    return ((errors.UserInputError, errors.MissingCheckpointError, errors.JudgeMismatchError,
             errors.MissingLabelError, NotPreparedError),
            (errors.CheckpointWriteError, errors.NonFiniteTrainingError,
             errors.DamagedCheckpointError))


def exit_with_error(error: Exception, input_errors: tuple[type[Exception], ...]) -> NoReturn:
    """Ends the command with `error: <message>` on a line of its own: exit status 2 for an
    error in what the user passed, 1 for a run that failed midway. A failed run's message is
    one write that starts on a new line: the threads of a failed Orbax write go on printing
    tracebacks and may be mid-line (one once split this message in two)."""
    if isinstance(error, input_errors):
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.stderr.write(f"\nerror: {error}\n")
    sys.stderr.flush()
    sys.exit(1)


def _resume_command(module: str = "experiments.main") -> str:
    """This process's command line, to run again (it resumes from the last checkpoint)."""
    import shlex

    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    configure_jax(_MULTIHOST.value, coordinator_address=_COORDINATOR.value,
                  num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
    input_errors, failures = known_errors()
    try:
        results = run(_CONFIG.value, _WORKDIR.value, _MODE.value, _CHECKPOINT.value)
    except input_errors + failures as e:
        exit_with_error(e, input_errors)
    except errors.RunInterrupted as e:  # SIGINT/SIGTERM: fit saved a checkpoint at its step
        print(f"{e}; resume with: {_resume_command()}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # outside the training loop (setup, evaluation) or a 3rd Ctrl-C
        print("Interrupted (SIGINT); the checkpoints saved so far are intact; run the same "
              f"command to resume: {_resume_command()}", file=sys.stderr, flush=True)
        sys.exit(130)
    logging.info("Results: %s", results)
    print(format_results(results, _WORKDIR.value if _MODE.value != "judge" else None),
          flush=True)


def format_results(results: dict, workdir: str | None = None) -> str:
    """A two-column table of the scalar results; `x` and `x_std` share a row as mean +- std.
    An accuracy of a label shows that label's chance level; an MWS mutual information at the
    estimator's ceiling (log M) is flagged as such (`report.result_rows` pairs them, for
    report.html too). With `workdir`, the files it holds."""
    from seqdis_jax.report import result_rows

    rows = []
    for r in result_rows(results):
        text = f"{r.value:.5g}" + (f" +- {r.std:.3g}" if r.std is not None else "")
        if r.chance is not None:
            text += f"  (chance {r.chance:.3f})"
        if r.ceiling is not None:
            text += (f"  (at the estimator's ceiling log M = {r.ceiling:.3f}: a bound, not a "
                     "measurement; raise config.eval.mi_batch_size)")
        rows.append((r.key, text))
    width = max((len(k) for k, _ in rows), default=0)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if workdir and os.path.isdir(workdir):
        files = sorted(f for f in os.listdir(workdir)
                       if os.path.isfile(os.path.join(workdir, f)))
        lines += ["", f"Outputs in {os.path.abspath(workdir)}: " + ", ".join(files) +
                  ", checkpoints/, tensorboard/ (README.md, 'Outputs', says what each holds)."]
    return "\n".join(lines)


if __name__ == "__main__":
    cpu_malloc.reexec_if_wanted()  # before any work: glibc reads its tunables at start
    app.run(main, flags_parser=parse_flags)
