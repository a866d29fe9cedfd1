"""The demo's task plugin layer: the modular task's texts, its STRICT verifier, the task loader,
the word-level tokenizer and the held-out/training pools."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from expo_rl.demo.model import build_tokenizer
from expo_rl.tasks import load_task
from expo_rl.tasks.modular import PRIMES, TASK
from expo_rl.tasks.pools import held_out_sets, training_pool

FIXTURE = Path(__file__).parent / "fixtures" / "demo_digit_sum_task.py"


def problem_and_trace(level: int = 5, seed: int = 0):
    rng = random.Random(seed)
    problem = TASK.make_problem(level, rng)
    return problem, TASK.solution_trace(problem, rng)


@pytest.mark.parametrize("level", sorted(PRIMES))
def test_problems_are_consistent(level):
    rng = random.Random(level)
    for _ in range(50):
        problem = TASK.make_problem(level, rng)
        p = problem.extra["p"]
        assert p == PRIMES[level] and problem.level == level
        for a, c, x in zip(problem.extra["a"], problem.extra["c"], problem.extra["x"]):
            assert 1 <= a < p and 1 <= x < p and a * x % p == c
        assert problem.answer == " ".join(map(str, problem.extra["x"]))
        trace = TASK.solution_trace(problem, rng)
        assert TASK.verify(problem, trace) and TASK.check_trace(problem, trace)
        assert TASK.verify(problem, problem.solution)          # the expert solution is right ...
        assert not TASK.check_trace(problem, problem.solution)  # ... but not in the model's style


def test_same_seed_same_problems():
    a = [TASK.make_problem(3, random.Random(7)).id for _ in range(3)]
    b = [TASK.make_problem(3, random.Random(7)).id for _ in range(3)]
    assert a == b


def test_bad_level_is_a_clear_error():
    with pytest.raises(ValueError, match="level must be one of"):
        TASK.make_problem(6, random.Random(0))


@pytest.mark.parametrize("mutate", [
    lambda t, ans: t.rsplit(" answer ", 1)[0],                               # no answer
    lambda t, ans: t + " 3",                                                 # junk after the answer
    lambda t, ans: t + " ; answer " + ans,                                   # two answers
    lambda t, ans: t.rsplit(" ", 1)[0],                                      # two numbers only
    lambda t, ans: t.rsplit(" ", 1)[0] + " 0" + t.rsplit(" ", 1)[1],         # leading zero
    lambda t, ans: t.rsplit(" ", 1)[0] + " " + str(int(t.rsplit(" ", 1)[1]) + 17),  # x + p (not reduced)
    lambda t, ans: t.replace(" answer ", " answer: "),                       # malformed keyword
    lambda t, ans: t.rsplit(" ", 1)[0] + " -" + t.rsplit(" ", 1)[1],         # sign
])
def test_verifier_rejects_malformed_answers(mutate):
    problem, trace = problem_and_trace()
    assert TASK.verify(problem, trace)
    assert not TASK.verify(problem, mutate(trace, problem.answer))


def test_verifier_rejects_a_wrong_answer():
    problem, trace = problem_and_trace()
    x = problem.extra["x"]
    wrong = " ".join(map(str, [x[0], x[1], (x[2] % 16) + 1]))
    assert not TASK.verify(problem, trace.replace(f"answer {problem.answer}", f"answer {wrong}"))


def test_whole_trace_check_catches_wrong_steps_with_a_right_answer():
    rng = random.Random(3)
    problem = TASK.make_problem(5, rng)
    p = problem.extra["p"]
    a, c, x = problem.extra["a"][0], problem.extra["c"][0], problem.extra["x"][0]
    rest = TASK.solution_trace(problem, rng).split(" ; ", 1)[1]
    g = x % (p - 1) + 1  # a wrong guess
    good = f"{a} x = {c} : {g} -> {a * g % p} no {x} -> {c} ok ; {rest}"
    assert TASK.check_trace(problem, good)
    wrong_product = f"{a} x = {c} : {g} -> {(a * g + 1) % p} no {x} -> {c} ok ; {rest}"
    lucky_ok = f"{a} x = {c} : {g} -> {c} ok ; {rest}"
    wrong_equation = f"{a} x = {(c + 1) % p} : {x} -> {c} ok ; {rest}"
    for bad in (wrong_product, lucky_ok, wrong_equation):
        assert TASK.verify(problem, bad)          # the final answer is still right
        assert not TASK.check_trace(problem, bad)


def test_tokenizer_round_trips_every_text_without_unknown_tokens():
    tokenizer = build_tokenizer(TASK.vocabulary())
    rng = random.Random(1)
    for level in sorted(PRIMES):
        for prompt, completion in TASK.pretraining_examples(level, rng) + [
                (TASK.hinted_prompt(TASK.make_problem(level, rng)), TASK.make_problem(level, rng).solution)]:
            for text in (prompt, completion):
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                assert tokenizer.unk_token_id not in ids
                assert tokenizer.decode(ids) == text
    assert tokenizer("17", add_special_tokens=False)["input_ids"].__len__() == 1  # numbers: one token


def test_pretraining_corpus_never_solves_hard_levels():
    """Hard levels appear only as "check these candidates" traces (no answer) and as hinted
    own-style traces (never under the plain prompt)."""
    rng = random.Random(2)
    for level in (4, 5):
        examples = TASK.pretraining_examples(level, rng)
        assert {("check" in p, "hint" in p) for p, _ in examples} == {(True, False), (False, True)}
        for prompt, completion in examples:
            if "check" in prompt:
                assert "answer" not in completion
            else:
                hint = prompt.split(" hint ")[1].removesuffix(" ?")
                assert completion.endswith(f"answer {hint}") and completion.count(" ok") == 3
    kinds = {"hint" in p for p, _ in TASK.pretraining_examples(1, rng)}
    assert kinds == {True, False}


def test_load_task_builtin_and_file(tmp_path):
    assert load_task("modular") is TASK
    user = load_task(str(FIXTURE))
    assert user.name == "digit_sum" and user.levels == (1, 2, 3, 4, 5)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_task(str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="built-in task"):
        load_task("no_such_task")
    empty = tmp_path / "empty_task.py"
    empty.write_text("X = 1\n")
    with pytest.raises(ValueError, match="define TASK"):
        load_task(str(empty))


def test_held_out_questions_never_in_training_pool():
    held_out = held_out_sets(TASK, 40)
    assert all(len(v) == 40 for v in held_out.values())
    keys = {p.question for ps in held_out.values() for p in ps}
    pool = training_pool(TASK, {1: 2, 5: 3}, 30, held_out)
    assert len(pool) == 150
    assert not keys & {p.question for p in pool}
    # step blocks are level-stratified: 2 level-1 then 3 level-5 questions per step
    assert [p.level for p in pool[:5]] == [1, 1, 5, 5, 5]


def test_first_stage_of_the_shipped_recipe_has_no_hard_hinted_traces():
    """``ModularTask(hard_hints=False)`` (stage 1 of ``build_shipped_recipe``): hard levels appear
    only as check traces; easy levels keep solve and hinted traces."""
    from expo_rl.tasks.modular import ModularTask

    stage1, rng = ModularTask(hard_hints=False), random.Random(3)
    for level in (4, 5):
        assert all("check" in prompt for prompt, _ in stage1.pretraining_examples(level, rng))
    assert {"hint" in p for p, _ in stage1.pretraining_examples(2, rng)} == {True, False}


def test_shipped_recipe_flag_is_for_the_builtin_task_only(capsys):
    from expo_rl.demo.build_base import main as build_main

    with pytest.raises(SystemExit) as exit_info:
        build_main(["--task", str(FIXTURE), "--shipped-recipe", "--out", "unused"])
    assert exit_info.value.code == 2
    assert "--shipped-recipe is the recipe of the built-in modular task only" in capsys.readouterr().err


def test_shipped_recipe_runs_two_stages_and_leaves_only_the_model(tmp_path, monkeypatch):
    """The recipe's plumbing with 2 updates per stage on a 1-layer model: stage 1 without the
    hard-level hinted traces, stage 2 continues from it, OUT holds the model and both stages'
    metadata and no stage-1 leftovers."""
    import expo_rl.demo.build_base as build
    from expo_rl.demo.model import ModelSize

    real, stages = build.build_base, []

    def short(task, out, **kwargs):
        stages.append(task.hard_hints)
        kwargs.update(steps=2, batch=4)
        if kwargs.get("init") is None:
            kwargs["size"] = ModelSize(hidden=32, layers=1, heads=2, intermediate=32)
        return real(task, out, **kwargs)

    monkeypatch.setattr(build, "build_base", short)
    meta = build.build_shipped_recipe(tmp_path / "base", progress=False)
    assert stages == [False, True]
    assert meta["seed"] == 1 and meta["init"]["seed"] == 0 and meta["init"]["lr"] == 1e-3
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == sorted(
        ["config.json", "demo_base.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json"])
    model, _ = build.load_base(tmp_path / "base")
    assert model.config.num_hidden_layers == 1  # stage 2 continued from stage 1
