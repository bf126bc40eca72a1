"""Resource quantities parse and format as Kubernetes resource.Quantity does."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localflow.errors import SpecError
from localflow.quantity import format_cpu, format_memory, parse_cpu, parse_memory

PATH = "Pod.spec.containers[0].resources.requests.cpu"


@pytest.mark.parametrize(
    "value, cores",
    [
        ("500m", 0.5),
        ("2", 2.0),
        (2, 2.0),
        (1.5, 1.5),
        ("0.5", 0.5),
        (".25", 0.25),
        ("100m", 0.1),
        ("1e0", 1.0),
        ("2500u", 0.0025),
        ("0", 0.0),
        ("+3", 3.0),
        (" 4 ", 4.0),
    ],
)
def test_parse_cpu(value, cores):
    assert parse_cpu(value, PATH) == pytest.approx(cores)


@pytest.mark.parametrize(
    "value, n_bytes",
    [
        ("128974848", 128974848),
        (128974848, 128974848),
        ("129e6", 129000000),
        ("129M", 129000000),
        ("123Mi", 123 * 2**20),
        ("1.5Gi", 3 * 2**29),
        ("1Ki", 1024),
        ("1k", 1000),
        ("1Ti", 2**40),
        ("1T", 10**12),
        ("1Pi", 2**50),
        ("1P", 10**15),
        ("1Ei", 2**60),
        ("1E", 10**18),  # E alone is exa ...
        ("1e3", 1000),  # ... e/E followed by digits is an exponent
        ("1E3", 1000),
        ("0.5", 1),  # rounded up to whole bytes, like Quantity.Value()
        ("1500m", 2),
        (0, 0),
    ],
)
def test_parse_memory(value, n_bytes):
    assert parse_memory(value, "Pod.spec.containers[0].resources.limits.memory") == n_bytes


@pytest.mark.parametrize("value", ["", "abc", "1gb", "1K", "1 Gi", "Gi", "1e", "--1", "1.2.3", None, True, [], float("nan"), float("inf"), "-1", -2])
def test_bad_memory_is_a_spec_error_naming_path_and_forms(value):
    path = "PyTorchJob.spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].resources.limits.memory"
    with pytest.raises(SpecError) as err:
        parse_memory(value, path)
    assert err.value.path == path
    assert "Mi" in str(err.value) and "Gi" in str(err.value)


@pytest.mark.parametrize("value", ["one", "500 m", "1x", "-500m", None, False])
def test_bad_cpu_is_a_spec_error_naming_path_and_forms(value):
    with pytest.raises(SpecError) as err:
        parse_cpu(value, PATH)
    assert err.value.path == PATH
    assert "500m" in str(err.value)


@pytest.mark.parametrize(
    "cores, text",
    [(0.5, "500m"), (2, "2"), (2.0, "2"), (1.25, "1250m"), (0.0001, "1m"), (0, "0"), (0.1, "100m")],
)
def test_format_cpu(cores, text):
    assert format_cpu(cores) == text


@pytest.mark.parametrize(
    "n_bytes, text",
    [(134217728, "128Mi"), (129000000, "129M"), (1024, "1Ki"), (1000, "1k"), (1536, "1536"), (0, "0"), (3 * 2**29, "1536Mi"), (2**60, "1Ei")],
)
def test_format_memory(n_bytes, text):
    assert format_memory(n_bytes) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**62))
def test_memory_round_trips(n):
    assert parse_memory(format_memory(n), "m") == n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_millicores_round_trip(milli):
    text = format_cpu(milli / 1000)
    assert parse_cpu(text, "c") == pytest.approx(milli / 1000)
    assert format_cpu(parse_cpu(text, "c")) == text


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "k", "M", "G", "Ki", "Mi", "Gi"]))
def test_suffixed_integers_scale_exactly(n, suffix):
    factor = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[suffix]
    assert parse_memory(f"{n}{suffix}", "m") == n * factor
