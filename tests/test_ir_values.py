"""Parameter values of the KFP IR: the int-as-double trap, CLI parsing, formatting, output files."""
import json
from typing import List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localflow.errors import SpecError
from localflow.pipelines.values import (
    MAX_SAFE_INTEGER,
    cast_parameter,
    format_value,
    normalize_type,
    parse_cli_value,
    read_output_parameter,
    resolve_input_definitions,
    zero_value,
)
from localflow.specs.pipeline import compile_pipeline_func

P = "root.inputDefinitions.parameters['x']"


@pytest.fixture(scope="module")
def compiled_root_inputs() -> dict:
    """inputDefinitions of a real compiled pipeline with one parameter of every type."""
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def use(n: int, d: float, s: str, b: bool, items: list, cfg: dict) -> str:
        return ""

    @dsl.pipeline(name="typed")
    def typed(
        n: int = 5,
        d: float = 0.25,
        s: str = "hi",
        b: bool = True,
        items: List[int] = [1, 2],
        cfg: dict = {"lr": 0.5, "epochs": 3},
        required_n: Optional[int] = None,
    ):
        use(n=n, d=d, s=s, b=b, items=items, cfg=cfg)

    spec = compile_pipeline_func(typed)[0]
    return spec["root"]["inputDefinitions"]


def test_compiler_writes_integer_defaults_as_doubles(compiled_root_inputs):
    params = compiled_root_inputs["parameters"]
    assert params["n"] == {"defaultValue": 5.0, "isOptional": True, "parameterType": "NUMBER_INTEGER"}
    assert isinstance(params["n"]["defaultValue"], float)


def test_resolved_pipeline_defaults_come_back_with_declared_python_types(compiled_root_inputs):
    values = resolve_input_definitions(compiled_root_inputs, {})
    assert values == {"n": 5, "d": 0.25, "s": "hi", "b": True, "items": [1, 2], "cfg": {"lr": 0.5, "epochs": 3}}
    assert type(values["n"]) is int
    assert type(values["items"][0]) is int
    assert type(values["cfg"]["epochs"]) is int


def test_given_values_override_defaults_and_are_cast(compiled_root_inputs):
    values = resolve_input_definitions(compiled_root_inputs, {"n": 7.0, "d": 1, "items": "[3, 4.0]"})
    assert values["n"] == 7 and type(values["n"]) is int
    assert values["d"] == 1.0 and type(values["d"]) is float
    assert values["items"] == [3, 4]


def test_optional_pipeline_input_without_default_is_absent_unless_zero_filled(compiled_root_inputs):
    assert compiled_root_inputs["parameters"]["required_n"] == {"isOptional": True, "parameterType": "NUMBER_INTEGER"}
    assert "required_n" not in resolve_input_definitions(compiled_root_inputs, {})
    assert resolve_input_definitions(compiled_root_inputs, {}, fill_zero=True)["required_n"] == 0


def test_unknown_given_parameter_lists_the_known_ones(compiled_root_inputs):
    with pytest.raises(SpecError) as err:
        resolve_input_definitions(compiled_root_inputs, {"nn": 1})
    assert err.value.path == "root.inputDefinitions.parameters['nn']"
    assert "unknown parameter (known: b, cfg, d, items, n, required_n, s)" in str(err.value)


def test_required_parameter_without_value_names_the_cli_fix():
    defs = {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}
    with pytest.raises(SpecError) as err:
        resolve_input_definitions(defs, {})
    assert str(err.value) == (
        "root.inputDefinitions.parameters['n']: required parameter has no value (pass -p n=VALUE)"
    )


def test_a_null_given_value_falls_back_to_the_default():
    defs = {"parameters": {"n": {"parameterType": "NUMBER_INTEGER", "defaultValue": 2.0, "isOptional": True}}}
    assert resolve_input_definitions(defs, {"n": None}) == {"n": 2}


def test_literals_restrict_the_value():
    defs = {"parameters": {"mode": {"parameterType": "STRING", "literals": ["fast", "slow"]},
                           "k": {"parameterType": "NUMBER_INTEGER", "literals": [1.0, 2.0]}}}
    assert resolve_input_definitions(defs, {"mode": "fast", "k": 2}) == {"mode": "fast", "k": 2}
    with pytest.raises(SpecError) as err:
        resolve_input_definitions(defs, {"mode": "medium", "k": 1})
    assert err.value.path == "root.inputDefinitions.parameters['mode']"
    assert "not one of the allowed literals ['fast', 'slow']" in str(err.value)
    with pytest.raises(SpecError, match=r"allowed literals \[1, 2\]"):
        resolve_input_definitions(defs, {"mode": "fast", "k": 3})


def test_bad_default_in_the_spec_is_reported_at_the_default_path():
    defs = {"parameters": {"n": {"parameterType": "NUMBER_INTEGER", "defaultValue": 2.5}}}
    with pytest.raises(SpecError) as err:
        resolve_input_definitions(defs, {}, "components['comp-a'].inputDefinitions")
    assert err.value.path == "components['comp-a'].inputDefinitions.parameters['n'].defaultValue"


@pytest.mark.parametrize(
    "value, ptype, expected",
    [
        (5.0, "NUMBER_INTEGER", 5),
        (5, "NUMBER_INTEGER", 5),
        (-3.0, "NUMBER_INTEGER", -3),
        (MAX_SAFE_INTEGER, "NUMBER_INTEGER", MAX_SAFE_INTEGER),
        (3, "NUMBER_DOUBLE", 3.0),
        (0.5, "NUMBER_DOUBLE", 0.5),
        ("a", "STRING", "a"),
        ("", "STRING", ""),
        (False, "BOOLEAN", False),
        ([1.0, 0.5, "x"], "LIST", [1, 0.5, "x"]),
        ((1, 2), "LIST", [1, 2]),
        ("[1, 2.0]", "LIST", [1, 2]),
        ({"a": {"b": 2.0}}, "STRUCT", {"a": {"b": 2}}),
        ('{"a": 1}', "STRUCT", {"a": 1}),
        ({"state": "COMPLETE", "error": {}}, "TASK_FINAL_STATUS", {"state": "COMPLETE", "error": {}}),
        (None, "NUMBER_INTEGER", None),
        (5.0, 2, 5),
    ],
)
def test_cast_parameter_gives_the_declared_python_type(value, ptype, expected):
    got = cast_parameter(value, ptype, P)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    "value, ptype, message",
    [
        (5.5, "NUMBER_INTEGER", "expected an integer (got 5.5, which has a fractional part)"),
        (True, "NUMBER_INTEGER", "expected an integer (got bool True)"),
        ("5", "NUMBER_INTEGER", "expected an integer (got str '5')"),
        (2**53, "NUMBER_INTEGER", "outside +/-(2**53-1)"),
        (True, "NUMBER_DOUBLE", "expected a number (got bool True)"),
        (5, "STRING", "expected a string (got int 5)"),
        (1, "BOOLEAN", "expected true or false (got int 1)"),
        ({"a": 1}, "LIST", "expected a list for LIST (got dict"),
        ("[1,", "LIST", "LIST value is a string that is not JSON"),
        ([1], "STRUCT", "expected a dict for STRUCT (got list"),
        (1, "NUMBER_INTGER", "unknown parameterType 'NUMBER_INTGER'"),
        (1, "PARAMETER_TYPE_ENUM_UNSPECIFIED", "unknown parameterType"),
    ],
)
def test_cast_parameter_rejects_values_of_the_wrong_type(value, ptype, message):
    with pytest.raises(SpecError) as err:
        cast_parameter(value, ptype, P)
    assert err.value.path == P
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text, ptype, expected",
    [
        ("hello world", "STRING", "hello world"),
        (" 5 ", "STRING", " 5 "),
        ("5", "NUMBER_INTEGER", 5),
        ("-12", "NUMBER_INTEGER", -12),
        ("5.0", "NUMBER_INTEGER", 5),
        ("1e3", "NUMBER_INTEGER", 1000),
        ("0.25", "NUMBER_DOUBLE", 0.25),
        ("3", "NUMBER_DOUBLE", 3.0),
        ("true", "BOOLEAN", True),
        ("False", "BOOLEAN", False),
        ("1", "BOOLEAN", True),
        ("[1, 2.5]", "LIST", [1, 2.5]),
        ('{"a": [1]}', "STRUCT", {"a": [1]}),
    ],
)
def test_cli_values_parse_by_declared_type(text, ptype, expected):
    got = parse_cli_value(text, ptype, P)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "text, ptype, message, fix",
    [
        ("five", "NUMBER_INTEGER", "expected an integer (got 'five')", "pass e.g. -p NAME=5"),
        ("5.5", "NUMBER_INTEGER", "fractional part", "pass a whole number or declare the input as float"),
        ("x", "NUMBER_DOUBLE", "expected a number (got 'x')", "pass e.g. -p NAME=0.5"),
        ("yes", "BOOLEAN", "expected true or false (got 'yes')", "pass -p NAME=true or -p NAME=false"),
        ("[1,", "LIST", "LIST value is not valid JSON", "pass a JSON array"),
        ("[1]", "STRUCT", "expected a dict for STRUCT", None),
    ],
)
def test_bad_cli_values_name_the_fix(text, ptype, message, fix):
    with pytest.raises(SpecError) as err:
        parse_cli_value(text, ptype, P)
    assert err.value.path == P
    assert message in str(err.value)
    if fix:
        assert fix in err.value.fix


@pytest.mark.parametrize(
    "value, text",
    [
        (5, "5"),
        (5.0, "5"),
        (0.25, "0.25"),
        (-1.5, "-1.5"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (123456789.125, "123456789.125"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (True, "true"),
        (False, "false"),
        ("as is ", "as is "),
        (None, ""),
        ([1.0, "a", True, None], '[1,"a",true,null]'),
        ({"b": {"c": 2.5}, "a": "ü"}, '{"b":{"c":2.5},"a":"ü"}'),
    ],
)
def test_format_value_matches_the_backend_string_conversion(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize(
    "text, ptype, expected",
    [
        (" padded \n", "STRING", " padded \n"),
        ("5\n", "NUMBER_INTEGER", 5),
        ("  -7 ", "NUMBER_INTEGER", -7),
        ("0.5\n", "NUMBER_DOUBLE", 0.5),
        ("3", "NUMBER_DOUBLE", 3.0),
        ("1e-3", "NUMBER_DOUBLE", 0.001),
        ("True\n", "BOOLEAN", True),
        ("t", "BOOLEAN", True),
        ("F", "BOOLEAN", False),
        ("[1, 2.0]\n", "LIST", [1, 2]),
        ('{"a": 1}', "STRUCT", {"a": 1}),
    ],
)
def test_output_parameter_files_convert_like_the_launcher(text, ptype, expected):
    got = read_output_parameter(text, ptype, "task 'a' output 'x'")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "text, ptype, message",
    [
        ("5.0", "NUMBER_INTEGER", "output is not a base-10 integer (got '5.0')"),
        ("1_000", "NUMBER_INTEGER", "not a base-10 integer"),
        ("0x10", "NUMBER_INTEGER", "not a base-10 integer"),
        (str(2**63), "NUMBER_INTEGER", "does not fit in 64 bits"),
        ("abc", "NUMBER_DOUBLE", "output is not a number"),
        ("1_0.5", "NUMBER_DOUBLE", "output is not a number"),
        ("yes", "BOOLEAN", "output is not a boolean"),
        ('{"a": 1}', "LIST", "output JSON is a dict, but LIST needs a JSON array"),
        ("[1]", "STRUCT", "output JSON is a list, but STRUCT needs a JSON object"),
        ("[1,", "LIST", "output is not valid JSON"),
    ],
)
def test_output_parameter_files_with_bad_text_are_rejected(text, ptype, message):
    with pytest.raises(SpecError) as err:
        read_output_parameter(text, ptype, "tasks['a'].outputs.parameters['x']")
    assert err.value.path == "tasks['a'].outputs.parameters['x']"
    assert message in str(err.value)


@pytest.mark.parametrize(
    "ptype, zero",
    [("NUMBER_INTEGER", 0), ("NUMBER_DOUBLE", 0.0), ("STRING", ""), ("BOOLEAN", False), ("LIST", []),
     ("STRUCT", {}), ("TASK_FINAL_STATUS", {})],
)
def test_zero_values(ptype, zero):
    got = zero_value(ptype)
    assert got == zero and type(got) is type(zero)


def test_normalize_type_accepts_enum_numbers():
    assert normalize_type(2) == "NUMBER_INTEGER"
    with pytest.raises(SpecError, match="unknown parameterType"):
        normalize_type(42, "x")


# --- round trips --------------------------------------------------------------------------------
_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER))
def test_integers_round_trip_through_format_and_output_files(n):
    assert read_output_parameter(format_value(n), "NUMBER_INTEGER", P) == n
    assert read_output_parameter(format_value(float(n)), "NUMBER_INTEGER", P) == n
    assert parse_cli_value(format_value(n), "NUMBER_INTEGER", P) == n


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False))
def test_doubles_round_trip_through_format_and_output_files(x):
    assert read_output_parameter(format_value(x), "NUMBER_DOUBLE", P) == x
    assert parse_cli_value(format_value(x), "NUMBER_DOUBLE", P) == x


@settings(max_examples=150, deadline=None)
@given(st.lists(_json_values, max_size=5))
def test_lists_round_trip_with_integral_doubles_as_ints(items):
    expected = cast_parameter(items, "LIST", P)
    assert read_output_parameter(format_value(items), "LIST", P) == expected
    assert parse_cli_value(format_value(items), "LIST", P) == expected
    assert json.loads(format_value(items)) == expected


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json_values, max_size=5))
def test_structs_round_trip(obj):
    assert read_output_parameter(format_value(obj), "STRUCT", P) == cast_parameter(obj, "STRUCT", P)


@given(st.booleans())
def test_booleans_round_trip(b):
    assert read_output_parameter(format_value(b), "BOOLEAN", P) is b
    assert parse_cli_value(format_value(b), "BOOLEAN", P) is b


def test_formatted_doubles_never_use_exponents_or_trailing_zero():
    for x in (1e-300, 5e-324, 1.7976931348623157e308, 2.0, 100.0):
        text = format_value(x)
        assert "e" not in text.lower() and not text.endswith(".0")
        assert float(text) == x
