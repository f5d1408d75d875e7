"""Fuzzing the spec loader: whatever the file holds, ``load_spec`` / ``parse_spec`` raise only SpecError.

Arbitrary bytes and text as a spec file, arbitrary JSON-like values as a spec mapping, and the
example spec with one field replaced by an arbitrary value. A valid result is a Spec; anything
else must be a SpecError naming at least one field (never a traceback of another exception).
Inputs that ever broke the loader are kept in ``tests/fuzz/corpus/specs/`` (test_corpus.py).
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acrvpc.domain.spec import Spec, SpecError, load_spec, parse_spec
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.fuzz

SCALE = float(os.environ.get("ACRVPC_FUZZ_SCALE", "1"))
EXAMPLE = yaml.safe_load(EXAMPLE_SPEC.read_text())
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        ["", "vpc-", "sg-1", "10.0.0.0/33", "a/b", "refs/tags/", "1/second", "0/minute", "whsec_", "\x00", "9" * 50]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(), kids, max_size=4),
    max_leaves=20,
)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=5000,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def paths(node, prefix=()):
    """Every (path) into the example spec: mapping keys and list indexes."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


EXAMPLE_PATHS = [p for p in paths(EXAMPLE) if p]


def replaced(path: tuple, value) -> dict:
    data = copy.deepcopy(EXAMPLE)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def check_parse(data, source: str = "fuzz") -> None:
    try:
        result = parse_spec(data, source)
    except SpecError as exc:
        assert exc.problems and all(isinstance(f, str) and isinstance(m, str) for f, m in exc.problems)
        return
    assert isinstance(result, Spec)


SCRATCH = Path(tempfile.mkdtemp(prefix="acrvpc-spec-fuzz-")) / "spec.yaml"  # one file, rewritten per example
atexit.register(shutil.rmtree, SCRATCH.parent, ignore_errors=True)


def check_load(content: bytes) -> None:
    SCRATCH.write_bytes(content)
    try:
        result = load_spec(SCRATCH)
    except SpecError as exc:
        assert exc.problems
        return
    assert isinstance(result, Spec)


class TestLoadSpecFuzz:
    @given(st.binary(max_size=512))
    @fuzz_settings(300)
    def test_arbitrary_bytes(self, content):
        check_load(content)

    @given(st.text(max_size=400))
    @fuzz_settings(300)
    def test_arbitrary_text(self, text):
        check_load(text.encode("utf-8", "surrogatepass"))

    @given(VALUES)
    @fuzz_settings(200)
    def test_arbitrary_yaml_documents(self, value):
        check_load(yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass"))


class TestParseSpecFuzz:
    @given(VALUES)
    @fuzz_settings(300)
    def test_arbitrary_values(self, value):
        check_parse(value)

    @given(st.sampled_from(EXAMPLE_PATHS), VALUES)
    @fuzz_settings(600)
    def test_the_example_with_one_field_replaced(self, path, value):
        check_parse(replaced(path, value))
