"""Fixtures of the adversarial suite (tests/adversarial): see adversarial_helpers."""

import pytest
from adversarial_helpers import write_problems


@pytest.fixture
def problems_file(tmp_path):
    return write_problems(tmp_path / "problems.jsonl")
