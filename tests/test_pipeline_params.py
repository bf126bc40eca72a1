"""Pipeline parameters end to end: every parameterType, casting (ints arrive as doubles in the IR),
defaults, optional inputs and ``-p``-style string values, through real kfp-compiled pipelines run
as real processes by the subprocess executor."""

import json
from typing import NamedTuple, Optional

from kfp import dsl

from localflow.specs.pipeline import compile_pipeline_func
from pipeline_support import BASE


@dsl.component(base_image=BASE)
def describe(i: int, f: float, s: str, b: bool, l: list, d: dict) -> str:
    import json

    def kind(v):
        if isinstance(v, list):
            return [type(x).__name__ for x in v]
        if isinstance(v, dict):
            return {k: type(x).__name__ for k, x in v.items()}
        return type(v).__name__

    return json.dumps({"types": [kind(v) for v in (i, f, s, b, l, d)], "values": [i, f, s, b, l, d]})


@dsl.pipeline(name="param-types")
def param_types(i: int = 5, f: float = 0.5, s: str = "007", b: bool = True, l: list = [1, 2.5, "x"],
                d: dict = {"k": 3, "n": {"m": [1]}}) -> str:
    return describe(i=i, f=f, s=s, b=b, l=l, d=d).output


def test_int_defaults_compile_as_doubles_and_reach_user_code_as_int(localflow):
    spec = compile_pipeline_func(param_types)[0]
    defs = spec["root"]["inputDefinitions"]["parameters"]
    assert defs["i"] == {"defaultValue": 5.0, "isOptional": True, "parameterType": "NUMBER_INTEGER"}
    assert isinstance(defs["i"]["defaultValue"], float)  # the trap is really in the IR

    run = localflow.run(param_types)
    assert run.state == "SUCCEEDED", run.error
    got = json.loads(run.outputs["Output"])
    assert got["types"] == ["int", "float", "str", "bool", ["int", "float", "str"], {"k": "int", "n": "dict"}]
    assert got["values"] == [5, 0.5, "007", True, [1, 2.5, "x"], {"k": 3, "n": {"m": [1]}}]
    assert run.task("describe").inputs["parameters"]["i"] == 5
    assert type(run.task("describe").inputs["parameters"]["i"]) is int


def test_string_values_like_cli_p_flags_are_cast_by_declared_type(localflow):
    run = localflow.run(param_types, params={"i": "3", "f": "0.25", "s": "0042", "b": "false",
                                             "l": "[4, 5]", "d": '{"z": true}'})
    assert run.state == "SUCCEEDED", run.error
    got = json.loads(run.outputs["Output"])
    assert got["values"] == [3, 0.25, "0042", False, [4, 5], {"z": True}]
    assert got["types"][:4] == ["int", "float", "str", "bool"]
    with localflow.runtime() as rt:
        recorded = rt.metadata.get_run(run.id)["parameters"]
    assert recorded["i"] == 3 and recorded["s"] == "0042" and recorded["l"] == [4, 5]


def test_python_values_given_to_run_override_defaults(localflow):
    run = localflow.run(param_types, params={"i": 7, "b": False, "l": []})
    got = json.loads(run.outputs["Output"])
    assert got["values"][0] == 7 and got["values"][3] is False and got["values"][4] == []


@dsl.component(base_image=BASE)
def produce(n: int) -> NamedTuple("Outs", [("i", int), ("f", float), ("s", str), ("b", bool), ("l", list), ("d", dict)]):
    from collections import namedtuple

    return namedtuple("Outs", "i f s b l d")(n * 2, n / 4, f"n={n}", n > 2, list(range(n)), {"n": n})


@dsl.component(base_image=BASE)
def consume(i: int, f: float, s: str, b: bool, l: list, d: dict) -> str:
    return f"{i!r}|{f!r}|{s}|{b!r}|{l!r}|{d!r}"


@dsl.pipeline(name="param-outputs")
def param_outputs(n: int = 3) -> NamedTuple("PipeOuts", [("i", int), ("f", float), ("b", bool), ("l", list),
                                                         ("d", dict), ("text", str)]):
    p = produce(n=n)
    c = consume(i=p.outputs["i"], f=p.outputs["f"], s=p.outputs["s"], b=p.outputs["b"], l=p.outputs["l"],
                d=p.outputs["d"])
    outs = NamedTuple("PipeOuts", [("i", int), ("f", float), ("b", bool), ("l", list), ("d", dict), ("text", str)])
    return outs(i=p.outputs["i"], f=p.outputs["f"], b=p.outputs["b"], l=p.outputs["l"], d=p.outputs["d"],
                text=c.output)


def test_output_parameters_of_every_type_flow_downstream_and_out_of_the_pipeline(localflow):
    run = localflow.run(param_outputs)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["text"] == "6|0.75|n=3|True|[0, 1, 2]|{'n': 3}"
    assert run.outputs["i"] == 6 and type(run.outputs["i"]) is int
    assert run.outputs["f"] == 0.75 and run.outputs["b"] is True
    assert run.outputs["l"] == [0, 1, 2] and run.outputs["d"] == {"n": 3}
    produced = run.task("produce").outputs["parameters"]
    assert produced == {"i": 6, "f": 0.75, "s": "n=3", "b": True, "l": [0, 1, 2], "d": {"n": 3}}


@dsl.component(base_image=BASE)
def optional_inputs(x: Optional[int] = None, s: str = "dflt", t: Optional[str] = None) -> str:
    return f"{x!r} {s!r} {t!r}"


@dsl.pipeline(name="optional-params")
def optional_params(t: Optional[str] = None) -> str:
    a = optional_inputs(t=t)
    b = optional_inputs(x=4, s="given", t="tt").after(a)
    return b.output


def test_optional_inputs_left_out_are_none_and_defaults_apply(localflow):
    run = localflow.run(optional_params)
    assert run.state == "SUCCEEDED", run.error
    assert run.task("optional-inputs").outputs["parameters"]["Output"] == "None 'dflt' None"
    assert run.outputs["Output"] == "4 'given' 'tt'"

    run2 = localflow.run(optional_params, params={"t": "from-run"})
    assert run2.task("optional-inputs").outputs["parameters"]["Output"] == "None 'dflt' 'from-run'"


@dsl.container_component
def echo_values(i: int, f: float, b: bool, l: list, d: dict, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", 'mkdir -p "$(dirname "$5")" && printf "%s %s %s %s %s" "$0" "$1" "$2" "$3" "$4" > "$5"'],
        args=[i, f, b, l, d, out],
    )


@dsl.pipeline(name="formatted-params")
def formatted_params(i: int = 5, f: float = 2.0, b: bool = False) -> str:
    return echo_values(i=i, f=f, b=b, l=[1, "a"], d={"k": 1.5}).outputs["out"]


def test_container_command_lines_format_values_like_the_backend(localflow):
    run = localflow.run(formatted_params)
    assert run.state == "SUCCEEDED", run.error
    # ints without ".0", whole floats too (driver/util.go pbValueToString), booleans lower case,
    # lists and structs as compact JSON
    assert run.outputs["Output"] == '5 2 false [1,"a"] {"k":1.5}'


def test_cli_p_flags_parse_by_declared_type_and_o_json_prints_a_list(tmp_path):
    import subprocess
    import sys

    from kfp import compiler

    spec = tmp_path / "params.yaml"
    compiler.Compiler().compile(param_types, str(spec))
    proc = subprocess.run([sys.executable, "-m", "localflow", "run", str(spec), "-p", "i=9", "-p", "b=false",
                           "-p", 'l=[3, "y"]', "-p", 'd={"a": {"b": 1}}', "-p", "s=12", "-o", "json",
                           "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed["kind"] == "List"
    [run_obj] = [o for o in listed["items"] if o["kind"] == "Run"]
    assert run_obj["status"]["state"] == "SUCCEEDED"
    assert run_obj["spec"]["runtimeConfig"]["parameters"] == {"i": 9, "f": 0.5, "s": "12", "b": False,
                                                             "l": [3, "y"], "d": {"a": {"b": 1}}}
    assert [o["kind"] for o in listed["items"]].count("Pod") == 1
