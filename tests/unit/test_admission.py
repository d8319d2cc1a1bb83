"""Admission of the per-request quality floor (``min_quality``) on every transport."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from orchestrator.serve.admission import BadInput, grpc_min_quality, parse_http_request, parse_request


def grpc_request(**params):
    r = service_pb2.ModelInferRequest(model_name="t2i")
    t = r.inputs.add(name="PROMPT", datatype="BYTES", shape=[1])
    t.contents.bytes_contents.append(b"a red circle")
    for k, v in params.items():
        setattr(r.parameters[k], v[0], v[1])
    return r


@pytest.mark.parametrize("param,expected", [(("double_param", 0.9), 0.9), (("int64_param", 1), 1.0), (("string_param", "0.5"), 0.5)])
def test_grpc_min_quality_as_any_numeric_parameter(param, expected):
    assert parse_request(grpc_request(min_quality=param), 5000.0).min_quality == pytest.approx(expected)
    assert parse_request(grpc_request(), 5000.0).min_quality is None


@pytest.mark.parametrize("param", [("double_param", 1.2), ("double_param", float("nan")), ("string_param", "high"), ("bool_param", True)])
def test_grpc_bad_min_quality_is_invalid_input(param):
    with pytest.raises(BadInput, match="min_quality must be a number in"):
        grpc_min_quality(grpc_request(min_quality=param))


def test_http_min_quality_parameter():
    header = {"inputs": [{"name": "PROMPT", "datatype": "BYTES", "shape": [1], "data": ["a red circle"]}], "parameters": {"min_quality": 0.95}}
    assert parse_http_request(header, b"", 5000.0).min_quality == pytest.approx(0.95)
    with pytest.raises(BadInput, match="min_quality"):
        parse_http_request({**header, "parameters": {"min_quality": -0.1}}, b"", 5000.0)
    with pytest.raises(BadInput, match="'parameters' must be an object"):
        parse_http_request({**header, "parameters": [1]}, b"", 5000.0)
    assert np.isclose(parse_http_request({k: v for k, v in header.items() if k != "parameters"}, b"", 5000.0).slo_ms, 5000.0)
