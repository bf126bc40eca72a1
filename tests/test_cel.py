"""CEL trigger conditions and parameter selectors, taken from real compiled pipelines."""
import subprocess
import sys

import pytest

from localflow.errors import SpecError
from localflow.pipelines import cel
from localflow.pipelines.cel import apply_selector, evaluate_condition
from localflow.specs.pipeline import compile_pipeline_func


def _conditions(spec: dict) -> dict:
    """task key -> condition for every task with a triggerPolicy.condition, at any depth."""
    found = {}
    dags = [spec["root"]] + list(spec["components"].values())
    for comp in dags:
        for key, task in (comp.get("dag") or {}).get("tasks", {}).items():
            cond = (task.get("triggerPolicy") or {}).get("condition")
            if cond:
                found[task["taskInfo"]["name"]] = cond
    return found


@pytest.fixture(scope="module")
def conditions():
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def f() -> float:
        return 1.0

    @dsl.component(base_image="python:3.11")
    def i() -> int:
        return 1

    @dsl.component(base_image="python:3.11")
    def s() -> str:
        return "a"

    @dsl.component(base_image="python:3.11")
    def b() -> bool:
        return True

    @dsl.component(base_image="python:3.11")
    def noop():
        pass

    @dsl.pipeline(name="conds")
    def pipe(n: int = 1, x: float = 2.0, flag: bool = False):
        fo, io, so, bo = f(), i(), s(), b()
        with dsl.If(io.output > 3, name="int-gt"):
            noop()
        with dsl.If(fo.output > 3, name="double-gt-int-literal"):
            noop()
        with dsl.If(fo.output <= 3.5, name="double-le"):
            noop()
        with dsl.If(io.output == fo.output, name="int-eq-double"):
            noop()
        with dsl.If(so.output != "x", name="str-ne"):
            noop()
        with dsl.If(bo.output == True, name="bool-eq"):  # noqa: E712 - the DSL needs ==
            noop()
        with dsl.If(n >= 2, name="pipeline-input"):
            noop()
        with dsl.If(x < n, name="double-lt-int-input"):
            noop()
        with dsl.If(io.output == 1, name="branch-one"):
            noop()
        with dsl.Elif(io.output == 2, name="branch-two"):
            noop()
        with dsl.Else(name="branch-else"):
            noop()

    return _conditions(compile_pipeline_func(pipe)[0])


def test_compiler_wraps_channels_as_expected(conditions):
    assert conditions["int-gt"] == "int(inputs.parameter_values['pipelinechannel--i-Output']) > 3"
    assert conditions["double-gt-int-literal"] == "inputs.parameter_values['pipelinechannel--f-Output'] > double(3)"
    assert conditions["branch-else"] == (
        "!(int(inputs.parameter_values['pipelinechannel--i-Output']) == 1) && "
        "!(int(inputs.parameter_values['pipelinechannel--i-Output']) == 2)"
    )


@pytest.mark.parametrize(
    "name, values, expected",
    [
        ("int-gt", {"pipelinechannel--i-Output": 5}, True),
        ("int-gt", {"pipelinechannel--i-Output": 3}, False),
        ("int-gt", {"pipelinechannel--i-Output": 4.0}, True),
        ("double-gt-int-literal", {"pipelinechannel--f-Output": 3.5}, True),
        ("double-gt-int-literal", {"pipelinechannel--f-Output": 3}, False),  # an int value still compares
        ("double-le", {"pipelinechannel--f-Output": 3.5}, True),
        ("double-le", {"pipelinechannel--f-Output": 4}, False),
        ("int-eq-double", {"pipelinechannel--i-Output": 2, "pipelinechannel--f-Output": 2.0}, True),
        ("int-eq-double", {"pipelinechannel--i-Output": 2, "pipelinechannel--f-Output": 2.5}, False),
        ("str-ne", {"pipelinechannel--s-Output": "y"}, True),
        ("str-ne", {"pipelinechannel--s-Output": "x"}, False),
        ("bool-eq", {"pipelinechannel--b-Output": True}, True),
        ("bool-eq", {"pipelinechannel--b-Output": False}, False),
        ("pipeline-input", {"pipelinechannel--n": 2}, True),
        ("pipeline-input", {"pipelinechannel--n": 1.0}, False),
        ("double-lt-int-input", {"pipelinechannel--x": 0.5, "pipelinechannel--n": 1}, True),
        ("double-lt-int-input", {"pipelinechannel--x": 1.5, "pipelinechannel--n": 1}, False),
    ],
)
def test_compiled_conditions_evaluate_as_the_dsl_means(conditions, name, values, expected):
    assert evaluate_condition(conditions[name], values, f"root.dag.tasks['{name}'].triggerPolicy.condition") is expected


@pytest.mark.parametrize("value, branch", [(1, "branch-one"), (2, "branch-two"), (7, "branch-else"), (2.0, "branch-two")])
def test_exactly_one_if_elif_else_branch_runs(conditions, value, branch):
    values = {"pipelinechannel--i-Output": value}
    taken = [n for n in ("branch-one", "branch-two", "branch-else") if evaluate_condition(conditions[n], values, n)]
    assert taken == [branch]


P = "root.dag.tasks['condition-1'].triggerPolicy.condition"


@pytest.mark.parametrize(
    "expr, values, message",
    [
        ("inputs.parameter_values['x'] >", {"x": 1}, "is not valid CEL at line 1, column"),
        ("inputs.parameter_values['y'] == 'a'", {"x": 1}, "failed: no such key 'y'"),
        ("inputs.parameter_values['x'] == 'a'", {"x": 1}, "failed: type mismatch: no == between double and string"),
        ("int(inputs.parameter_values['x']) > 'a'", {"x": 1}, "type mismatch: no > between int and string"),
        ("inputs.parameter_values['x']", {"x": 1}, "evaluated to float 1.0, not a boolean"),
        ("", {}, "condition is empty"),
    ],
)
def test_condition_errors_name_the_path_expression_and_reason(expr, values, message):
    with pytest.raises(SpecError) as err:
        evaluate_condition(expr, values, P)
    assert err.value.path == P
    assert message in str(err.value)
    if expr:
        assert repr(expr) in str(err.value)


def test_compiler_emitted_unparseable_condition_fails_only_when_evaluated():
    # kfp writes the int operand as a quoted literal when compared with a string; that is not
    # valid CEL because of the nested quotes. The backend fails the task when it evaluates it.
    expr = ("'int(inputs.parameter_values['pipelinechannel--i-Output'])' == "
            "inputs.parameter_values['pipelinechannel--s-Output']")
    with pytest.raises(SpecError, match="is not valid CEL"):
        evaluate_condition(expr, {"pipelinechannel--i-Output": 1, "pipelinechannel--s-Output": "1"}, P)


def test_python_is_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated"
    with pytest.raises(SpecError):
        evaluate_condition(f"__import__('os').system('touch {marker}') == 0", {}, P)
    assert not marker.exists()


@pytest.fixture(scope="module")
def selectors():
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def use(a: int, b: int) -> int:
        return b

    @dsl.pipeline(name="sel")
    def pipe():
        with dsl.ParallelFor([{"a": 1, "b": 10}, {"a": 2, "b": 20}]) as item:
            use(a=item.a, b=item.b)

    spec = compile_pipeline_func(pipe)[0]
    loop = next(c for k, c in spec["components"].items() if k.startswith("comp-for-loop"))
    params = loop["dag"]["tasks"]["use"]["inputs"]["parameters"]
    raw = next(iter(spec["root"]["dag"]["tasks"].values()))["parameterIterator"]["items"]["raw"]
    return {k: v["parameterExpressionSelector"] for k, v in params.items()}, raw


def test_loop_item_selectors_pick_struct_fields(selectors):
    import json

    exprs, raw = selectors
    assert exprs == {"a": 'parseJson(string_value)["a"]', "b": 'parseJson(string_value)["b"]'}
    items = json.loads(raw)
    assert [apply_selector(exprs["a"], item, "s") for item in items] == [1, 2]
    assert [apply_selector(exprs["b"], item, "s") for item in items] == [10, 20]
    # the item may also arrive as its JSON text
    assert apply_selector(exprs["a"], json.dumps(items[1]), "s") == 2


def test_list_index_selector_and_nested_values():
    assert apply_selector("parseJson(string_value)[1]", [1.5, {"q": [1, 2]}], "s") == {"q": [1, 2]}
    assert apply_selector('parseJson(string_value)["q"][0]', {"q": [7]}, "s") == 7
    assert apply_selector('parseJson(string_value)["f"]', {"f": 0.25}, "s") == 0.25


SP = "components['comp-for-loop-2'].dag.tasks['use'].inputs.parameters['a'].parameterExpressionSelector"


@pytest.mark.parametrize(
    "expr, value, message",
    [
        ('parseJson(string_value)["z"]', {"a": 1}, "no such key 'z'"),
        ("parseJson(string_value)[5]", [1], "list index out of range"),
        ('parseJson(string_value)["a"]', "not json", "parseJson: string_value is not JSON"),
        ('parseJson(string_value)["a"]', [1], "type mismatch"),
        ('parseJson(string_value)["a"', {"a": 1}, "is not valid CEL"),
    ],
)
def test_selector_errors_name_the_path(expr, value, message):
    with pytest.raises(SpecError) as err:
        apply_selector(expr, value, SP)
    assert err.value.path == SP
    assert message in str(err.value)


def test_expressions_are_compiled_once():
    expr = "int(inputs.parameter_values['cache-probe']) == 1"
    evaluate_condition(expr, {"cache-probe": 1}, P)
    before = cel._program.cache_info()
    for _ in range(5):
        evaluate_condition(expr, {"cache-probe": 2}, P)
    after = cel._program.cache_info()
    assert after.hits - before.hits == 5
    assert after.misses == before.misses


def test_celpy_is_imported_lazily():
    code = "import sys, localflow.pipelines.cel; print('celpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
