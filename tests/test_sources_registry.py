"""Data sources: sharding over processes, resumable positions, pairs, the frozen-sample cache,
and the runtime's micro-batching of whole groups/pairs."""

import json

import pytest
import torch

from expo_rl.data import load_problems
from expo_rl.engine.batching import split_micro_batches, tag_rows, units
from expo_rl.policy import build_prompt, load_policy, sample
from expo_rl.sources import SOURCES, Row, SourceEnv, StepContext, get_source
from expo_rl.sources.preference import pairs_from_samples
from expo_rl.verify import batch_rewards, correctness_reward


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tokenizer = load_policy("tiny:qwen2")
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def problems():
    return load_problems("gsm8k_train", limit=6).problems


def make_env(tokenizer, model, *, rank=0, world=1, cache_dir=None, name="t", calls=None):
    def sample_fn(policy, prompts, *, n, seed):
        if calls is not None:
            calls.append(len(prompts))
        with torch.no_grad():
            return sample(policy, tokenizer, prompts, n=n, max_new_tokens=6, seed=seed)

    def score(rows):
        values = batch_rewards(correctness_reward, [r.completion for r in rows], [r.reference for r in rows],
                               [r.fields for r in rows])
        for row, value in zip(rows, values):
            row.reward = value

    return SourceEnv(name=name, tokenizer=tokenizer, prompt=lambda p: build_prompt(tokenizer, p.question),
                     sample=sample_fn, frozen_policy=lambda: model, score=score, gather=list,
                     rank=rank, world_size=world, seed=5, cache_dir=cache_dir, show_progress=False)


def build(name, problems, env, **options):
    spec = get_source(name)
    source = spec.build(problems, spec.options(**options), env)
    source.prepare(env)
    return source


def test_registry_lists_the_four_kinds():
    assert {"fixed", "frozen_samples", "on_policy", "preference_pairs"} <= set(SOURCES)
    with pytest.raises(KeyError, match="allowed: .*on_policy"):
        get_source("nope")


def test_two_processes_see_the_single_process_rows_and_resume(tiny, problems):
    model, tokenizer = tiny
    single = build("fixed", problems, make_env(tokenizer, model), rows_per_step=4)
    halves = [build("fixed", problems, make_env(tokenizer, model, rank=r, world=2), rows_per_step=4)
              for r in (0, 1)]
    for step in range(1, 5):  # 16 rows from 6 problems: crosses two epoch boundaries
        whole = [r.problem_id for r in single.next_rows(StepContext(step, model))]
        split = [r.problem_id for h in halves for r in h.next_rows(StepContext(step, model))]
        assert whole == split and len(whole) == 4
        if step == 2:
            state = json.loads(json.dumps(single.state_dict()))
    resumed = build("fixed", problems, make_env(tokenizer, model), rows_per_step=4)
    resumed.load_state_dict(state)
    fresh = build("fixed", problems, make_env(tokenizer, model), rows_per_step=4)
    expected = [[r.problem_id for r in fresh.next_rows(StepContext(s, model))] for s in range(1, 5)][2:]
    assert [[r.problem_id for r in resumed.next_rows(StepContext(s, model))] for s in (3, 4)] == expected
    # SFT rows: prompt tokens + the expert solution ending with EOS
    row = single.next_rows(StepContext(5, model))[0]
    assert row.completion_ids[-1] == tokenizer.eos_token_id and row.completion.strip()
    with pytest.raises(ValueError, match="split evenly over 2 processes"):
        build("fixed", problems, make_env(tokenizer, model, world=2), rows_per_step=3).next_rows(
            StepContext(1, model))


def test_on_policy_groups_and_deterministic_seeds(tiny, problems):
    model, tokenizer = tiny
    a = build("on_policy", problems, make_env(tokenizer, model), questions_per_step=2, group_size=3)
    b = build("on_policy", problems, make_env(tokenizer, model), questions_per_step=2, group_size=3)
    rows_a, rows_b = a.next_rows(StepContext(1, model)), b.next_rows(StepContext(1, model))
    assert [r.completion_ids for r in rows_a] == [r.completion_ids for r in rows_b]
    assert sorted(r.group for r in rows_a) == [0, 0, 0, 1, 1, 1]
    assert all(len({r.problem_id for r in rows_a if r.group == g}) == 1 for g in (0, 1))
    assert all(r.reward is None for r in rows_a)  # scoring is the runtime's job


def test_frozen_samples_are_cached_and_reused(tiny, problems, tmp_path):
    model, tokenizer = tiny
    calls = []
    env = make_env(tokenizer, model, cache_dir=str(tmp_path), calls=calls)
    first = build("frozen_samples", problems[:3], env, samples_per_question=2, rows_per_step=2,
                  questions_per_call=2)
    assert calls == [2, 1] and len(first.rows) == 6
    assert all(r.reward in (0.0, 1.0) for r in first.rows)
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 6
    calls.clear()
    again = build("frozen_samples", problems[:3], make_env(tokenizer, model, cache_dir=str(tmp_path),
                                                           calls=calls),
                  samples_per_question=2, rows_per_step=2)
    assert calls == [] and [r.completion_ids for r in again.rows] == [r.completion_ids for r in first.rows]
    rows = again.next_rows(StepContext(1, model))
    assert len(rows) == 2 and all(r.group >= 0 for r in rows)


def test_preference_pairs_from_file_and_from_samples(tiny, problems, tmp_path):
    model, tokenizer = tiny
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "chosen": "2", "rejected": "3", "answer": "2"}) + "\n"
                    + json.dumps({"question": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    source = build("preference_pairs", [], make_env(tokenizer, model), path=str(path), pairs_per_step=2)
    rows = source.next_rows(StepContext(1, model))
    assert [r.pair_sign for r in rows] == [1, -1, 1, -1] and [r.pair for r in rows] == [0, 0, 1, 1]
    assert {r.completion for r in rows if r.pair_sign == 1} == {"2", "4"}
    path.write_text('{"question": "x", "chosen": "y"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: .*'rejected'"):
        build("preference_pairs", [], make_env(tokenizer, model), path=str(path))

    def r(reward):
        return Row(prompt_ids=[1], completion_ids=[2], problem_id="p", reference="1", reward=reward)

    good, bad = r(1.0), r(0.0)
    assert pairs_from_samples([[bad, good, bad], [good, good], [bad]]) == [(good, bad)]
    expert = r(1.0)
    assert pairs_from_samples([[bad], [good]], [expert, expert]) == [(expert, bad)]
    # rejected: any takes any other own sample, correct or not (c- ~ pi_ref); unfinished ones only when asked
    other_good = r(1.0)
    assert pairs_from_samples([[good, other_good]], rejected="any") == [(good, other_good)]
    assert pairs_from_samples([[good, other_good]]) == []
    assert pairs_from_samples([[good], [good]], [expert, expert], rejected="any") == [(expert, good)] * 2
    capped = Row(prompt_ids=[1], completion_ids=[2], problem_id="p", reference="1", reward=0.0, finished=False)
    assert pairs_from_samples([[good, capped]], unfinished=False) == []
    assert pairs_from_samples([[good, capped]], unfinished=True) == [(good, capped)]
    # a random tiny model is never right: expert solution vs its (wrong) samples
    env = make_env(tokenizer, model, cache_dir=str(tmp_path / "c"))
    source = build("preference_pairs", problems[:2], env, chosen="solution", samples_per_question=1,
                   pairs_per_step=2, rejected_unfinished=True)  # its samples never stop either
    rows = source.next_rows(StepContext(1, model))
    chosen = [x for x in rows if x.pair_sign == 1]
    assert len(chosen) == 2 and all(x.completion in {p.solution for p in problems} for x in chosen)


def test_micro_batches_keep_groups_and_pairs_whole():
    def row(group=-1, pair=-1, sign=0):
        return Row(prompt_ids=[1], completion_ids=[2], problem_id="p", reference="", group=group,
                   pair=pair, pair_sign=sign)

    grpo = [row(group=g) for g in (0, 0, 0, 1, 1, 1)]
    sft = [row(), row()]
    dpo = [row(pair=0, sign=1), row(pair=0, sign=-1)]
    tagged = tag_rows([grpo, sft, dpo, [row(group=0), row(group=0)]])
    assert [t.group for t in tagged][-2:] == [2, 2]  # offset past the first term's groups
    assert len(units(tagged)) == 2 + 2 + 1 + 1
    for count in (1, 2, 3, 6):
        batches = split_micro_batches(tagged, count)
        assert len(batches) == count and all(batches)
        assert sum(len(b) for b in batches) == len(tagged)
        for unit in units(tagged):
            members = {id(tagged[i]) for i in unit}
            assert sum(bool(members & {id(t) for t in b}) for b in batches) == 1
    with pytest.raises(ValueError, match="grad_accum=7"):
        split_micro_batches(tagged, 7)
