"""Does the verifier agree with the data sets' own answers?

(a) MATH-500: extract the final answer from each expert ``solution`` (last ``\\boxed{}``) and
    verify it against the ``answer`` field. Reported twice: the full pipeline
    (``correctness_reward``: string fast path, then math-verify) and math-verify alone (fast path
    off, so every row goes through the time-limited worker).
(b) GSM8K test: the raw ``answer`` text (reasoning, then ``#### n``) as a completion against the
    number after ``####`` read independently from the file (commas kept: the verifier must cope).

Usage: ``python scripts/verifier_agreement.py [--data-dir DIR] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from expo_rl.data import resolve_data_dir
from expo_rl.verify import check_equivalence, correctness_reward, extract_answer, verifier_stats
from expo_rl.verify.pool import get_pool


def read_rows(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def math500(folder) -> dict:
    rows = read_rows(folder / "math" / "math500.jsonl")
    pipeline_bad, verify_only_bad, differs = [], [], 0
    for row in rows:
        differs += extract_answer(row["solution"]) != row["answer"]
        if correctness_reward(row["solution"], row["answer"]) != 1.0:
            pipeline_bad.append(row["unique_id"])
        verdict = check_equivalence(extract_answer(row["solution"]), row["answer"], string_match=False)
        if not verdict.equal:
            verify_only_bad.append(row["unique_id"])
    return {
        "rows": len(rows),
        "extracted_string_differs_from_answer": differs,
        "pipeline_agreement": 1 - len(pipeline_bad) / len(rows),
        "pipeline_disagreeing_ids": pipeline_bad,
        "math_verify_only_agreement": 1 - len(verify_only_bad) / len(rows),
        "math_verify_only_disagreeing_ids": verify_only_bad,
    }


def gsm8k_test(folder) -> dict:
    rows = read_rows(folder / "gsm8k" / "test.jsonl")
    bad, with_commas = [], 0
    for index, row in enumerate(rows):
        gold = row["answer"].rsplit("####", 1)[1].strip()
        with_commas += "," in gold
        if correctness_reward(row["answer"], gold) != 1.0:
            bad.append(f"gsm8k_test/{index}")
    return {"rows": len(rows), "golds_with_thousands_commas": with_commas, "agreement": 1 - len(bad) / len(rows), "disagreeing_ids": bad}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="data folder (default: ../shared/data)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    folder = resolve_data_dir(args.data_dir)
    get_pool().wait_ready()
    start = time.perf_counter()
    report = {"math500": math500(folder), "gsm8k_test": gsm8k_test(folder)}
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["verifier_stats"] = verifier_stats.snapshot()
    m, g = report["math500"], report["gsm8k_test"]
    print(f"MATH-500 ({m['rows']} rows; extracted string != answer field in "
          f"{m['extracted_string_differs_from_answer']}): pipeline agreement {m['pipeline_agreement']:.2%}"
          f" (disagreeing: {m['pipeline_disagreeing_ids'] or 'none'}); math-verify only "
          f"{m['math_verify_only_agreement']:.2%} (disagreeing: "
          f"{m['math_verify_only_disagreeing_ids'] or 'none'})")
    print(f"GSM8K test ({g['rows']} rows; {g['golds_with_thousands_commas']} golds with commas): agreement {g['agreement']:.2%} "
          f"(disagreeing: {g['disagreeing_ids'] or 'none'})")
    stats = report["verifier_stats"]
    print(f"verifier: {stats['calls']} calls, {stats['timeouts']} timeouts, "
          f"{stats['pred_parse_failures']}/{stats['gold_parse_failures']} pred/gold parse failures, "
          f"{stats['errors']} errors; {report['seconds']}s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0 if m["pipeline_agreement"] >= 0.99 and g["agreement"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
