"""Evaluation: the unbiased pass@k estimator, accuracy tables by level/subject, ``evaluate``."""

from expo_rl.eval.evaluation import EvalResult, SampleRecord, evaluate
from expo_rl.eval.passk import mean_accuracy, mean_pass_at_k, pass_at_k
from expo_rl.eval.tables import ProblemScore, by_level, by_subject, format_table, pass_at_k_row

__all__ = [
    "EvalResult", "ProblemScore", "SampleRecord", "by_level", "by_subject", "evaluate",
    "format_table", "mean_accuracy", "mean_pass_at_k", "pass_at_k", "pass_at_k_row",
]
