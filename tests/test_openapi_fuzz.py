"""The REST API fuzzed against its own OpenAPI document, as Envoy serves it, with schemathesis:
valid and invalid operands alike get no 5xx, and every status, content type and body is one
the document describes."""

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from gcd_stack.envoy_config import LOOPBACK, openapi_path
from gcd_stack.ports import Ports

from figures import record_figure

pytestmark = pytest.mark.faults
EXAMPLES_PER_MODE = 200
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_api_behaves_as_its_document_says(stack_ports: Ports, mode: GenerationMode) -> None:
    base_url = f"http://{LOOPBACK}:{stack_ports.envoy}"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    # Every operation the build described, a new RPC's too.
    described = json.loads(openapi_path().read_text())["paths"]
    operations = [
        schema[path][verb.upper()].as_strategy(generation_mode=mode)
        for path, verbs in described.items()
        for verb in verbs
    ]
    statuses: list[int] = []

    @given(case=st.one_of(operations))
    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def behaves(case: schemathesis.Case[Any]) -> None:
        statuses.append(case.call_and_validate(base_url=base_url, checks=CHECKS).status_code)

    behaves()
    record_figure(f"{mode.value} calls made from the OpenAPI document, answered as documented", len(statuses))
    record_figure(f"statuses of the {mode.value} calls", " ".join(map(str, sorted(set(statuses)))))
    assert set(statuses) <= ({200, 400} if mode is GenerationMode.POSITIVE else {400, 404})
