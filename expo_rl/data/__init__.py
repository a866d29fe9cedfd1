"""Problem records and loaders: MATH, GSM8K, any JSONL with a field map, Hugging Face datasets.

``load_problems("math500")`` returns a :class:`LoadResult` (``.problems``, ``.skipped``, ...);
malformed rows raise a :class:`DataError` naming file, line and field, or are skipped and
counted with ``on_error="skip"``.
"""

from expo_rl.data.filters import select_problems
from expo_rl.data.loaders import ALIASES, BUILTIN, dataset_names, load_problems
from expo_rl.data.paths import DATA_ENV, resolve_data_dir
from expo_rl.data.records import Problem
from expo_rl.data.result import DataError, LoadResult, RowError
from expo_rl.data.schema import GSM8K_FIELDS, MATH_FIELDS, FieldMap

__all__ = [
    "ALIASES", "BUILTIN", "DATA_ENV", "GSM8K_FIELDS", "MATH_FIELDS", "DataError", "FieldMap",
    "LoadResult", "Problem", "RowError", "dataset_names", "load_problems", "resolve_data_dir",
    "select_problems",
]
