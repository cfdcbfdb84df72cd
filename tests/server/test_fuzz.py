"""Schemathesis over the OpenAPI schema: no generated request, valid or not, gets a 5xx.

Bounded and seeded here (``make test``); ``make fuzz`` runs the same with
``CNNSCOPE_FUZZ_EXAMPLES=300`` (over 5,000 cases). Both halves of each operation's cases are
generated: requests that fit the schema and requests that break it. Half of the
model-addressed cases name the served model, so validation past the model lookup is
reached (except feature renders: a minute of CPU each).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app

EXAMPLES = int(os.environ.get("CNNSCOPE_FUZZ_EXAMPLES", "6"))
AT_LEAST = int(os.environ.get("CNNSCOPE_FUZZ_AT_LEAST", "0"))
SEED = int(os.environ.get("CNNSCOPE_FUZZ_SEED", "12"))


def _strategy(op, mode: GenerationMode):
    plain = op.as_strategy(mode)
    if "{model_id}" not in op.path or op.path.startswith("/api/features"):
        return plain
    return st.one_of(plain, op.as_strategy(mode, path_parameters={"model_id": "tiny"}))


@pytest.mark.slow
def test_no_server_errors(mnist) -> None:
    app = create_app(
        [ServedModel("tiny", build_model("lenet5"), {}, "test")],
        data=mnist,
        allowed_hosts=["testserver", "localhost"],
        seed=0,
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @seed(SEED)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=_strategy(op, mode))
            def check(case) -> None:
                r = case.call()
                statuses[r.status_code] += 1
                if r.status_code >= 500:
                    errors.append(f"{case.method} {case.formatted_path}: {r.status_code} {r.text}")

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to break (no parameters)
    total = sum(statuses.values())
    print(f"fuzz: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert not errors, errors[:5]
    assert total >= AT_LEAST
