"""ExPO data sources on a real tiny model: refresh schedule, zero-signal gating, ExP-DPO pairs."""

from __future__ import annotations

import copy

import pytest
import torch

from expo_rl.data import load_problems
from expo_rl.engine.recipe import FrozenPolicy
from expo_rl.expo.answer_format import ANSWER_FORMATS, expert_positive
from expo_rl.expo.bank import refresh_generation, regenerates_at
from expo_rl.expo.explanations import policy_fingerprint
from expo_rl.policy import build_prompt, load_policy, sample
from expo_rl.sources import Row, SourceEnv, StepContext
from expo_rl.sources.explanations import ExplanationOptions, build_explanations
from expo_rl.sources.expo_pairs import ExpoPairsOptions, build_expo_pairs, pick_rejected
from expo_rl.sources.on_policy import OnPolicyOptions, build_on_policy
from expo_rl.verify import batch_rewards, correctness_reward


@pytest.fixture(scope="module")
def parts():
    model, tokenizer = load_policy("tiny:qwen2")
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    problems = load_problems("gsm8k_train", limit=3).problems
    return model, tokenizer, frozen, problems


def make_env(parts, tmp_path, name="exp_sft") -> SourceEnv:
    model, tokenizer, frozen, _ = parts

    def sample_fn(policy, prompts, *, n, seed):
        with torch.no_grad():
            return sample(policy, tokenizer, prompts, n=n, temperature=1.0, max_new_tokens=6, seed=seed)

    def score(rows):
        todo = [r for r in rows if r.reward is None]
        values = batch_rewards(correctness_reward, [r.completion for r in todo], [r.reference for r in todo],
                               [r.fields for r in todo])
        for row, value in zip(todo, values):
            row.reward = float(value)

    return SourceEnv(name=name, tokenizer=tokenizer, prompt=lambda p: build_prompt(tokenizer, p.question),
                     sample=sample_fn, frozen_policy=lambda: frozen, score=score,
                     gather=lambda objs: list(objs), cache_dir=str(tmp_path / "cache"), show_progress=False)


def nudge(model: torch.nn.Module, step: int) -> None:
    """Change the weights a little, as an optimiser step would."""
    with torch.no_grad():
        next(model.parameters()).add_(1e-3 * step)


def test_refresh_schedule_is_every_n_steps_and_offline_never():
    assert [s for s in range(1, 11) if regenerates_at(s, 3)] == [1, 4, 7, 10]
    assert [s for s in range(1, 11) if regenerates_at(s, 0)] == [1]
    assert [refresh_generation(s, 2) for s in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        refresh_generation(0, 2)


@pytest.mark.parametrize("every, expected", [(2, [1, 3, 5]), (0, [1])])
def test_source_regenerates_exactly_on_schedule(parts, tmp_path, every, expected):
    model, _, frozen, problems = parts
    policy = copy.deepcopy(model)
    options = ExplanationOptions(questions_per_step=len(problems), refresh_every=every,
                                 explanations_per_question=1, on_mismatch="repair", shuffle=False)
    source = build_explanations(problems, options, make_env(parts, tmp_path))
    source.prepare(source.env)
    hashes = {}
    for step in range(1, 7):
        rows = source.next_rows(StepContext(step, policy))
        assert {r.problem_id for r in rows} == {p.id for p in problems}
        hashes[step] = {e.policy["hash"] for p in problems for e in source.bank.usable(p.id)}
        nudge(policy, step)
    assert source.bank.generation_steps == expected
    if every == 0:  # offline: always the frozen initial policy, whatever the current one is
        assert all(h == {policy_fingerprint(frozen)} for h in hashes.values())
    else:  # online: a new policy version at each regeneration, the same one in between
        assert hashes[1] == hashes[2] != hashes[3] == hashes[4] != hashes[5]
    assert source.metrics()["explain/total"] == len(expected) * len(problems)


def test_offline_cache_is_reused_by_a_second_run(parts, tmp_path):
    _, _, _, problems = parts
    options = ExplanationOptions(questions_per_step=len(problems), on_mismatch="repair", pregenerate=True)
    first = build_explanations(problems, options, make_env(parts, tmp_path))
    first.prepare(first.env)
    second = build_explanations(problems, options, make_env(parts, tmp_path))
    second.prepare(second.env)
    assert second.bank.generation_steps == []  # everything came from the cache
    texts = lambda s: sorted(e.positive for p in problems for e in s.bank.usable(p.id))  # noqa: E731
    assert texts(first) == texts(second)


def test_zero_signal_only_touches_only_questions_without_a_correct_sample(parts, tmp_path):
    model, _, _, problems = parts
    rewards = {problems[0].id: [0.0, 0.0], problems[1].id: [0.0, 1.0], problems[2].id: [0.0, 0.0]}
    grpo_rows = [Row(prompt_ids=[1], completion_ids=[2], problem_id=pid, reference="", reward=r, group=g)
                 for g, (pid, values) in enumerate(rewards.items()) for r in values]
    for only, expected in ((True, {problems[0].id, problems[2].id}), (False, set(rewards))):
        options = ExplanationOptions(questions_per_step=3, target="expert", only_zero_signal=only,
                                     signal_term="grpo", shuffle=False)
        source = build_explanations(problems, options, make_env(parts, tmp_path))
        source.prepare(source.env)
        ctx = StepContext(1, model, rows={"grpo": grpo_rows})
        assert {r.problem_id for r in source.next_rows(ctx)} == expected
    with pytest.raises(ValueError, match="signal_term"):
        source = build_explanations(problems, ExplanationOptions(only_zero_signal=True, signal_term="x"),
                                    make_env(parts, tmp_path))
        source.next_rows(StepContext(1, model, rows={"grpo": grpo_rows}))


def test_expert_rows_are_the_expert_solution_under_the_plain_prompt(parts, tmp_path):
    _, tokenizer, _, problems = parts
    source = build_explanations(problems, ExplanationOptions(questions_per_step=3, target="expert", shuffle=False),
                                make_env(parts, tmp_path))
    source.prepare(source.env)
    rows = source.next_rows(StepContext(1, None))
    for row, problem in zip(rows, problems):
        text = expert_positive(problem, ANSWER_FORMATS["boxed"])
        assert row.completion == text and "<<" not in text
        assert row.completion_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(row.prompt_ids) == build_prompt(tokenizer, problem.question)


def test_explanation_source_draws_the_grpo_terms_questions(parts, tmp_path):
    model, _, _, problems = parts
    env = make_env(parts, tmp_path)
    grpo = build_on_policy(problems, OnPolicyOptions(questions_per_step=2, group_size=1), env)
    expo = build_explanations(problems, ExplanationOptions(questions_per_step=2, target="expert"), env)
    for step in range(1, 4):
        ctx = StepContext(step, model)
        assert [r.problem_id for r in grpo.next_rows(ctx)] == [r.problem_id for r in expo.next_rows(ctx)]


def test_expo_pairs_chosen_explanation_rejected_own_sample(parts, tmp_path):
    model, _, frozen, problems = parts
    options = ExpoPairsOptions(questions_per_step=2, on_mismatch="repair", rejected_samples=2, shuffle=False,
                               rejected_unfinished=True)  # 6-token samples of a random model never stop
    source = build_expo_pairs(problems, options, make_env(parts, tmp_path, "exp_dpo"))
    source.prepare(source.env)
    rows = source.next_rows(StepContext(1, model))
    assert [r.pair_sign for r in rows] == [1, -1, 1, -1] and [r.pair for r in rows] == [0, 0, 1, 1]
    for chosen, rejected in zip(rows[::2], rows[1::2]):
        assert chosen.problem_id == rejected.problem_id
        assert chosen.completion.endswith(f"\\boxed{{{chosen.reference}}}$.")
        assert rejected.reward == 0.0  # the tiny model is never right: the rejected is incorrect
        assert chosen.prompt_ids == rejected.prompt_ids  # both under the plain prompt


def reference_fingerprint(frozen: FrozenPolicy) -> str:
    with frozen.reference() as reference:
        return policy_fingerprint(reference)


def test_online_pairs_refresh_the_reference_through_the_env(parts, tmp_path):
    """refresh_reference: at each regeneration after the first, the source asks the env to make
    pi_ref a snapshot of the current policy; the frozen initial policy (offline sampling) stays."""
    model, _, _, problems = parts
    policy = copy.deepcopy(model)
    frozen = FrozenPolicy(lambda: copy.deepcopy(model), torch.device("cpu"), eager=True)
    env = make_env(parts, tmp_path, "exp_dpo")
    env.frozen_policy, env.refresh_reference = frozen, frozen.refresh_reference
    options = ExpoPairsOptions(questions_per_step=2, refresh_every=2, refresh_reference=True,
                               on_mismatch="repair", rejected_samples=1, rejected_unfinished=True)
    source = build_expo_pairs(problems, options, env)
    source.prepare(env)
    initial = policy_fingerprint(model)
    for step in range(1, 5):
        if step == 3:
            at_regeneration = policy_fingerprint(policy)
        source.next_rows(StepContext(step, policy))
        if step < 3:
            assert reference_fingerprint(frozen) == initial
        nudge(policy, step)
    # at step 3 (a regeneration) the reference became the policy as it was then, and stays so
    assert reference_fingerprint(frozen) == at_regeneration != initial
    assert source.reference_refreshes == 1 and frozen.refreshes == 1
    assert policy_fingerprint(frozen()) == initial  # loaded again: the initial policy
    with pytest.raises(ValueError, match="refresh_every"):
        build_expo_pairs(problems, ExpoPairsOptions(refresh_reference=True, refresh_every=0), env)


def _row(reward, finished=True, name=""):
    return Row(prompt_ids=[1], completion_ids=[2], problem_id="q", reference="", completion=name,
               reward=reward, finished=finished)


def test_rejected_any_takes_any_own_sample_and_unfinished_ones_only_when_asked():
    right, wrong = _row(1.0, name="right"), _row(0.0, name="wrong")
    # any: the first own sample, a draw from pi(.|q), correct or not (the paper's c- ~ pi_ref)
    assert pick_rejected([right, wrong], "any").completion == "right"
    assert pick_rejected([right, wrong], "prefer_incorrect").completion == "wrong"
    assert pick_rejected([right], "prefer_incorrect").completion == "right"
    assert pick_rejected([right], "incorrect_only") is None
    capped_wrong, capped_right = _row(0.0, False, "capped_wrong"), _row(1.0, False, "capped_right")
    rows = [capped_wrong, capped_right, right, wrong]
    assert pick_rejected(rows, "any").completion == "right"
    assert pick_rejected(rows, "prefer_incorrect").completion == "wrong"
    assert pick_rejected(rows, "any", unfinished=True).completion == "capped_wrong"
    assert pick_rejected([capped_wrong, capped_right], "prefer_incorrect") is None
    assert pick_rejected([capped_wrong], "incorrect_only", unfinished=True).completion == "capped_wrong"


def test_expo_pairs_skip_length_capped_rejecteds_by_default(parts, tmp_path):
    model, _, _, problems = parts
    options = ExpoPairsOptions(questions_per_step=2, on_mismatch="repair", rejected_samples=2, shuffle=False)
    source = build_expo_pairs(problems, options, make_env(parts, tmp_path, "exp_dpo"))
    source.prepare(source.env)
    rows = source.next_rows(StepContext(1, model))
    own = [r for p in problems[:2] for r in source.own[p.id][1]]
    assert own and not any(r.finished for r in own)  # 6 tokens: a random tiny model never stops
    assert rows == [] and source.metrics()["pairs/skipped_no_rejected"] == 2


def test_explanations_report_the_questions_drawn(parts, tmp_path):
    """The ExP-SFT normaliser counts questions drawn, not rows (issue 11): only_zero_signal
    keeps 2 of 3 questions, the source still reports 3 (x rows_per_question)."""
    model, _, _, problems = parts
    grpo_rows = [Row(prompt_ids=[1], completion_ids=[2], problem_id=p.id, reference="", reward=r, group=g)
                 for g, (p, r) in enumerate(zip(problems, (0.0, 1.0, 0.0)))]
    for per_question in (1, 2):
        options = ExplanationOptions(questions_per_step=3, target="expert", only_zero_signal=True,
                                     rows_per_question=per_question, shuffle=False)
        source = build_explanations(problems, options, make_env(parts, tmp_path))
        source.prepare(source.env)
        rows = source.next_rows(StepContext(1, model, rows={"grpo": grpo_rows}))
        assert len(rows) == 2 * per_question
        assert source.step_samples() == 3 * per_question
