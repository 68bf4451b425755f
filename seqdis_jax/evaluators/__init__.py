"""The evaluators: the registry and run loop (base), one module per evaluator family, and the
pictures they draw (drawing). Importing the package registers every evaluator.

The family modules are imported in a fixed order: it is the order of `EVALUATORS`, in which
'all' runs them, and so each evaluator's rng (`jax.random.fold_in(rng, i)`).
"""

# isort: off
from seqdis_jax.evaluators import base
from seqdis_jax.evaluators import reconstruction
from seqdis_jax.evaluators import grids
from seqdis_jax.evaluators import generation
from seqdis_jax.evaluators import latent
from seqdis_jax.evaluators import verification
from seqdis_jax.evaluators import downstream
from seqdis_jax.evaluators import information
from seqdis_jax.evaluators import tsne
# isort: on

from seqdis_jax.evaluators.base import (
    EVALUATORS,
    EvalContext,
    Evaluator,
    encode_dataset,
    register,
    run_evaluators,
    select_evaluators,
)
from seqdis_jax.evaluators.downstream import DOWNSTREAM_INPUTS, check_downstream_tasks
from seqdis_jax.evaluators.generation import (
    JUDGE_CURVE_PREFIX,
    balanced_per_class,
    judge_accuracy,
    judge_curve_sequences,
    judge_generation,
    judge_limit,
    judge_swap,
    make_judge_curve,
)
from seqdis_jax.evaluators.information import make_mi_curve, mutual_information
from seqdis_jax.evaluators.latent import latent_classification
from seqdis_jax.evaluators.verification import verification_eer

__all__ = [
    "DOWNSTREAM_INPUTS",
    "EVALUATORS",
    "JUDGE_CURVE_PREFIX",
    "EvalContext",
    "Evaluator",
    "balanced_per_class",
    "base",
    "check_downstream_tasks",
    "downstream",
    "encode_dataset",
    "generation",
    "grids",
    "information",
    "judge_accuracy",
    "judge_curve_sequences",
    "judge_generation",
    "judge_limit",
    "judge_swap",
    "latent",
    "latent_classification",
    "make_judge_curve",
    "make_mi_curve",
    "mutual_information",
    "reconstruction",
    "register",
    "run_evaluators",
    "select_evaluators",
    "tsne",
    "verification",
    "verification_eer",
]
