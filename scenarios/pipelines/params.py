"""Every parameter type passed through a component and echoed back as outputs.

Pipeline inputs (IR type): ``i: int = 3`` (NUMBER_INTEGER, compiled as 3.0), ``f: float = 0.5``
(NUMBER_DOUBLE), ``s: str = "hello"`` (STRING), ``b: bool = True`` (BOOLEAN), ``l: list = [1, 2, "x"]``
(LIST), ``d: dict = {"k": "v", "n": 1, "nested": {"z": [True, 1.5]}}`` (STRUCT) and
``o: Optional[str] = None`` (STRING, isOptional, no default).

``echo`` returns a NamedTuple with the same values under the same names (``o`` may be None only on
the way in, so the ``o`` output is ``"<none>"`` for None) plus ``types``: a JSON object (sorted keys)
mapping each input name to the Python type the function received, element by element for lists and
dicts, e.g. ``"l": ["int", "int", "str"]``. This pins the int-as-double trap: integers inside LIST and
STRUCT values must reach user code as ints, as the real backend's Go JSON encoding gives them.

Tasks (names as compiled):

- ``echo``: every input wired to the pipeline input of the same name.
- ``echo-2``: every input except ``o`` wired to ``echo``'s outputs (task output -> input for each
  type); ``o`` not passed, so the component default None applies.

Pipeline outputs: ``i``, ``f``, ``s``, ``b``, ``l``, ``d``, ``o`` from ``echo`` and ``types`` from
``echo-2``.

Expected, defaults: run SUCCEEDED; both tasks SUCCEEDED; outputs i == 3, f == 0.5, s == "hello",
b is True, l == [1, 2, "x"], d == {"k": "v", "n": 1, "nested": {"z": [True, 1.5]}}, o == "<none>";
echo's ``types`` == TYPES below; echo-2's the same (its ``o`` is the component default None).
With ``i=7, f=2.5, s="", b=False, l=[], d={}, o="set"``: i == 7, f == 2.5, s == "", b is False,
l == [], d == {}, o == "set"; echo's ``types`` has "o": "str", "l": [], "d": {}; echo-2's has
"o": "NoneType".

kfp.local (2.17.3) fails before running anything when ``o`` is left out (``ValueError: Unknown value
type``: it cannot read an Optional pipeline input without default). With ``o="set"`` it runs, but falls
into the trap: l arrives as [1.0, 2.0, "x"] and d["n"] as 1.0 (types "float"), so only the top-level
types match.
"""
from typing import NamedTuple, Optional

from kfp import dsl

EchoOutputs = NamedTuple(
    "EchoOutputs",
    [
        ("i", int),
        ("f", float),
        ("s", str),
        ("b", bool),
        ("l", list),
        ("d", dict),
        ("o", str),
        ("types", str),
    ],
)


@dsl.component(base_image="python:3.11")
def echo(
    i: int, f: float, s: str, b: bool, l: list, d: dict, o: Optional[str] = None
) -> NamedTuple(
    "EchoOutputs",
    [
        ("i", int),
        ("f", float),
        ("s", str),
        ("b", bool),
        ("l", list),
        ("d", dict),
        ("o", str),
        ("types", str),
    ],
):
    import json

    def type_of(value):
        if isinstance(value, list):
            return [type_of(v) for v in value]
        if isinstance(value, dict):
            return {k: type_of(v) for k, v in value.items()}
        return type(value).__name__

    values = {"i": i, "f": f, "s": s, "b": b, "l": l, "d": d, "o": o}
    types = {name: type_of(value) for name, value in values.items()}
    print(values, types)
    outputs = NamedTuple(
        "EchoOutputs",
        [
            ("i", int),
            ("f", float),
            ("s", str),
            ("b", bool),
            ("l", list),
            ("d", dict),
            ("o", str),
            ("types", str),
        ],
    )
    return outputs(i, f, s, b, l, d, "<none>" if o is None else o, json.dumps(types, sort_keys=True))


@dsl.pipeline(name="params")
def pipeline(
    i: int = 3,
    f: float = 0.5,
    s: str = "hello",
    b: bool = True,
    l: list = [1, 2, "x"],
    d: dict = {"k": "v", "n": 1, "nested": {"z": [True, 1.5]}},
    o: Optional[str] = None,
) -> EchoOutputs:
    first = echo(i=i, f=f, s=s, b=b, l=l, d=d, o=o)
    second = echo(
        i=first.outputs["i"],
        f=first.outputs["f"],
        s=first.outputs["s"],
        b=first.outputs["b"],
        l=first.outputs["l"],
        d=first.outputs["d"],
    )
    return EchoOutputs(
        i=first.outputs["i"],
        f=first.outputs["f"],
        s=first.outputs["s"],
        b=first.outputs["b"],
        l=first.outputs["l"],
        d=first.outputs["d"],
        o=first.outputs["o"],
        types=second.outputs["types"],
    )


TYPES = {
    "b": "bool",
    "d": {"k": "str", "n": "int", "nested": {"z": ["bool", "float"]}},
    "f": "float",
    "i": "int",
    "l": ["int", "int", "str"],
    "o": "NoneType",
    "s": "str",
}
# task_outputs "types" values are the JSON text parsed (json.loads) before comparing.
EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {"echo": "SUCCEEDED", "echo-2": "SUCCEEDED"},
        "task_outputs": {"echo": {"types": TYPES}, "echo-2": {"types": TYPES, "o": "<none>"}},
        "outputs": {
            "i": 3,
            "f": 0.5,
            "s": "hello",
            "b": True,
            "l": [1, 2, "x"],
            "d": {"k": "v", "n": 1, "nested": {"z": [True, 1.5]}},
            "o": "<none>",
        },
    },
    {
        "params": {"i": 7, "f": 2.5, "s": "", "b": False, "l": [], "d": {}, "o": "set"},
        "state": "SUCCEEDED",
        "tasks": {"echo": "SUCCEEDED", "echo-2": "SUCCEEDED"},
        "task_outputs": {
            "echo": {"types": {**TYPES, "d": {}, "l": [], "o": "str"}},
            "echo-2": {"types": {**TYPES, "d": {}, "l": []}},
        },
        "outputs": {"i": 7, "f": 2.5, "s": "", "b": False, "l": [], "d": {}, "o": "set"},
    },
]
