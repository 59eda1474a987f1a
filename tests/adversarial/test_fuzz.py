"""Property-based fuzzing (Hypothesis) of the two places hostile input lands first: the update
validator and the record reader. Neither may raise, whatever it is given."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from safefed.errors import UserError
from safefed.federated.gate import GateConfig, UpdateGate
from safefed.federated.updates import Update, check_examples, check_update
from safefed.recordio import FieldNames, open_source, rows

REF = {"a.lora_A.weight": np.zeros((2, 3), np.float32), "a.lora_B.weight": np.ones((3, 2), np.float32)}

anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
                        | st.binary(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                    max_size=3), max_leaves=8)
arrays = hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int8, np.float16]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
updates = st.one_of(
    anything,
    st.dictionaries(st.sampled_from([*REF, "extra", "a"]), arrays | anything, max_size=4),
    st.fixed_dictionaries({k: hnp.arrays(np.float32, v.shape) for k, v in REF.items()}),
)


@settings(max_examples=400, deadline=None)
@given(updates, st.one_of(st.none(), st.floats(allow_nan=True), st.just(0.0)))
def test_check_update_never_raises(arrays_in, max_norm):
    reason = check_update(arrays_in, REF, None if max_norm is None or not max_norm > 0 else max_norm)
    assert reason is None or reason.startswith("invalid:")
    if reason is None:  # what it lets through is exactly the reference's keys, shapes, dtypes, finite
        assert set(arrays_in) == set(REF)
        assert all(arrays_in[k].shape == REF[k].shape and arrays_in[k].dtype == REF[k].dtype
                   and np.isfinite(arrays_in[k]).all() for k in REF)


@settings(max_examples=400, deadline=None)
@given(anything | st.floats() | st.integers(min_value=-(10**30), max_value=10**30))
def test_check_examples_never_raises(n):
    count, reason = check_examples(n)
    assert (count is None) != (reason is None)
    if count is not None:
        assert isinstance(count, int) and count >= 0 and not isinstance(n, bool) and math.isfinite(float(n))


class _Unmeasured(UpdateGate):
    """The gate's validity step alone: no model is needed to decide what is valid."""

    def __init__(self) -> None:
        self.config = GateConfig(max_update_norm=50.0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", 3, "3", None]), updates,
                          anything | st.floats() | st.integers(), st.none() | st.text(max_size=5)), max_size=6))
def test_validity_never_raises_and_repeated_ids_never_pass(items):
    batch = [Update(c, a, n, problem=p) for c, a, n, p in items]
    problems = _Unmeasured().validity(REF, batch)
    assert len(problems) == len(batch)
    ids = [str(u.client) for u in batch]
    for u, problem in zip(batch, problems, strict=True):
        if ids.count(str(u.client)) > 1 or u.problem is not None:
            assert problem is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600) | st.lists(st.sampled_from([
    b'{"prompt": "a", "response": "b"}', b"[1, 2]", b'{"prompt": ["x"]}', b'{"prompt": "\\ud800"}', b"\xff\xfe",
    b"", b"  ", b'"just a string"', b'{"messages": [{"role": "user"}]}', b"prompt,response", b"[", b"{"]),
    max_size=8).map(b"\n".join), suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_record_reader_never_raises_and_loses_no_row(tmp_path_factory, data, suffix):
    path = Path(tmp_path_factory.mktemp("fuzz")) / f"in{suffix}"
    path.write_bytes(data)
    try:
        got = list(rows(open_source(path), FieldNames(["prompt"], ["response"]), 1000))
    except UserError as exc:  # a .json array is one document: broken, it has no rows to quarantine
        assert suffix == ".json" and data.lstrip().startswith(b"[")
        assert re.match(rf"{re.escape(str(path))}:\d+: ", str(exc))
        return
    assert [r.index for r in got] == list(range(1, len(got) + 1))
    if suffix == ".jsonl":  # every non-blank line is one row, kept or quarantined
        assert len(got) == sum(1 for line in data.split(b"\n") if line.strip())
    for r in got:
        assert r.problem is None or isinstance(r.problem, str)
        if r.problem is None:
            assert isinstance(r.prompt, str) and isinstance(r.response, str)
