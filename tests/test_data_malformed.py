"""Every malformed-row case: the error names file, line and field; ``on_error="skip"`` counts it."""

import json

import pytest

from expo_rl.data import DataError, load_problems

GOOD_MATH = {"unique_id": "a/1", "problem": "1+1?", "solution": "It is $\\boxed{2}$.",
             "answer": "2", "subject": "Algebra", "level": 1}


def write_rows(tmp_path, lines, name="rows.jsonl"):
    """Each entry is a dict (dumped as JSON) or a raw string line."""
    path = tmp_path / name
    text = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def math_row(**changes):
    row = dict(GOOD_MATH, unique_id=f"a/{changes.pop('n', 2)}")
    for key, value in changes.items():
        if value is DROP:
            row.pop(key)
        else:
            row[key] = value
    return row


DROP = object()

# (label, bad row, fragment that the error must contain besides file:line)
MATH_CASES = [
    ("missing answer", math_row(answer=DROP), "required field 'answer' (answer) is missing"),
    ("missing problem", math_row(problem=DROP), "'problem' (question) is missing"),
    ("missing level key", math_row(level=DROP), "'level' (level) is missing"),
    ("missing solution", math_row(solution=DROP), "'solution' (solution) is missing"),
    ("missing id", math_row(unique_id=DROP), "'unique_id' (id) is missing"),
    ("empty question", math_row(problem="   "), "field 'problem' (question) is empty"),
    ("empty answer", math_row(answer=""), "field 'answer' (answer) is empty"),
    ("empty solution", math_row(solution=""), "field 'solution' (solution) is empty"),
    ("question wrong type", math_row(problem=["1+1"]), "field 'problem' (question): expected a string, got list"),
    ("answer wrong type", math_row(answer={"x": 1}), "expected a string or a number, got dict"),
    ("answer bool", math_row(answer=True), "got bool"),
    ("level wrong type", math_row(level="hard"), "field 'level' (level): expected a positive integer"),
    ("level zero", math_row(level=0), "expected a positive integer, got 0"),
    ("level float", math_row(level=2.5), "got float"),
    ("subject wrong type", math_row(subject=3), "field 'subject' (subject): expected a string"),
    ("null answer", math_row(answer=None), "expected a string or a number, got NoneType"),
    ("null solution", math_row(solution=None), "'solution' (solution) is null"),
]


@pytest.mark.parametrize("label,bad,fragment", MATH_CASES, ids=[c[0] for c in MATH_CASES])
def test_math_malformed_row_names_file_line_and_field(tmp_path, label, bad, fragment):
    path = write_rows(tmp_path, [GOOD_MATH, bad, math_row(n=3)])
    with pytest.raises(DataError) as error:
        load_problems(str(path), schema="math")
    message = str(error.value)
    assert message.startswith(f"{path}:2: "), message
    assert fragment in message


@pytest.mark.parametrize("label,bad,fragment", MATH_CASES, ids=[c[0] for c in MATH_CASES])
def test_math_malformed_row_skipped_and_counted(tmp_path, label, bad, fragment):
    path = write_rows(tmp_path, [GOOD_MATH, bad, math_row(n=3)])
    result = load_problems(str(path), schema="math", on_error="skip")
    assert [p.id for p in result.problems] == ["a/1", "a/3"]
    assert result.skipped == 1
    assert result.skip_reasons[0].startswith(f"{path}:2: ") and fragment in result.skip_reasons[0]


@pytest.mark.parametrize("line,fragment", [
    ('{"unique_id": "a/2", "problem": "x"', "invalid JSON"),
    ("not json at all", "invalid JSON"),
    ("[1, 2, 3]", "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    ("null", "expected a JSON object, got NoneType"),
])
def test_bad_json_lines(tmp_path, line, fragment):
    path = write_rows(tmp_path, [GOOD_MATH, line, math_row(n=3)])
    with pytest.raises(DataError, match=rf"^{path}:2: .*{fragment}"):
        load_problems(str(path), schema="math")
    skipped = load_problems(str(path), schema="math", on_error="skip")
    assert (len(skipped), skipped.skipped) == (2, 1)


def test_invalid_utf8_names_its_line(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(json.dumps(GOOD_MATH).encode() + b'\n{"problem": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: not valid UTF-8"):
        load_problems(str(path), schema="math")


def test_blank_lines_are_counted_not_rows(tmp_path):
    # Blank lines hold no row, so nothing is lost: they are counted, never an error.
    path = write_rows(tmp_path, ["", GOOD_MATH, "   ", math_row(n=3), ""])
    result = load_problems(str(path), schema="math")
    assert len(result) == 2
    assert result.blank_lines == 3  # lines 1, 3 and 5
    assert result.skipped == 0


def test_null_level_is_a_valid_problem(tmp_path):
    # null = unknown difficulty ("Level ?" in the original MATH): kept, with level None.
    path = write_rows(tmp_path, [GOOD_MATH, math_row(level=None)])
    result = load_problems(str(path), schema="math")
    assert [p.level for p in result.problems] == [1, None]
    # ...and a level filter does not match it unless None is asked for.
    assert len(load_problems(str(path), schema="math", levels=[1])) == 1
    assert len(load_problems(str(path), schema="math", levels=[None])) == 1


def test_level_strings_in_hendrycks_spelling(tmp_path):
    path = write_rows(tmp_path, [math_row(n=1, level="Level 4"), math_row(n=2, level="Level ?"),
                                 math_row(n=3, level="2")])
    assert [p.level for p in load_problems(str(path), schema="math")] == [4, None, 2]


def test_duplicate_id_is_an_error(tmp_path):
    path = write_rows(tmp_path, [GOOD_MATH, math_row(n=2), dict(GOOD_MATH, problem="other")])
    with pytest.raises(DataError, match=rf"^{path}:3: duplicate id 'a/1' \(first seen at {path}:1\)"):
        load_problems(str(path), schema="math")
    assert load_problems(str(path), schema="math", on_error="skip").skipped == 1


@pytest.mark.parametrize("answer,fragment", [
    ("She has 5 apples.", "no '#### <answer>' marker"),
    ("She has 5 apples.\n####   ", "nothing after '####'"),
])
def test_gsm8k_answer_without_marker(tmp_path, answer, fragment):
    path = write_rows(tmp_path, [{"question": "q1", "answer": "x\n#### 1"},
                                 {"question": "q2", "answer": answer}])
    with pytest.raises(DataError, match=rf"^{path}:2: field 'answer' \(answer\): {fragment}"):
        load_problems(str(path), schema="gsm8k")
    result = load_problems(str(path), schema="gsm8k", on_error="skip")
    assert (len(result), result.skipped) == (1, 1)


def test_skip_mode_counts_every_bad_row_and_keeps_ids_stable(tmp_path):
    rows = [{"question": "q0", "answer": "a\n#### 1"}, "{broken", {"question": "", "answer": "#### 2"},
            {"question": "q3", "answer": "b\n#### 1,234"}]
    path = write_rows(tmp_path, rows)
    result = load_problems(str(path), schema="gsm8k", on_error="skip")
    assert result.skipped == 2 and len(result.skip_reasons) == 2
    assert [r.split(": ")[0] for r in result.skip_reasons] == [f"{path}:2", f"{path}:3"]
    # ids are row positions, so the good rows keep theirs when others are skipped
    assert [(p.id, p.answer) for p in result.problems] == [("rows/0", "1"), ("rows/3", "1234")]


def test_on_error_value_is_checked():
    with pytest.raises(DataError, match="on_error='ignore': allowed values are raise, skip"):
        load_problems("math500", on_error="ignore")
