"""Container components: ConcatPlaceholder, IfPresentPlaceholder, OutputPath parameter files, artifact paths.

Every component here is a ``@dsl.container_component``: no executor output file, outputs are the files
the command leaves at the pre-assigned paths. Images are ``alpine:3.19`` (commands use ``sh``) and
``python:3.11`` (commands use ``python3``); both commands exist on any Linux host, so an executor that
runs commands on the host needs no image mapping.

Tasks (names as compiled):

- ``greet``: argv element 1 is ``{"Concat": ["Hello, ", name, {"IfPresent": {"InputName": "punctuation",
  "Then": punctuation, "Else": "!"}}]}``; writes it (no newline) into the OutputPath(str) ``greeting``
  file (``mkdir -p`` of its directory first) and echoes it. Called without ``punctuation``: always
  "Hello, <name>!".
- ``greet-2``: the same component with ``punctuation`` wired to the optional pipeline input
  ``punctuation`` (``Optional[str] = None``, so absent unless given: absent/null counts as not present).
- ``make-dataset``: ``sh`` script with flags ``--rows N --out PATH`` plus the list-valued
  ``{"IfPresent": {"InputName": "header", "Then": ["--header", header]}}`` (no Else: the two elements
  disappear when ``header`` is absent). Writes the CSV header (default ``i,square``) and rows
  ``i,i*i`` for i in 0..rows-1 to the Output[Dataset] ``data`` path.
- ``count-rows``: ``python3 -c`` reading ``data`` (Input[Dataset] path) and writing the number of
  data lines (lines after the header) into the OutputPath(int) ``count`` file, and the header into the
  OutputPath(str) ``header`` file.

Pipeline outputs: ``greeting`` (greet-2.greeting), ``rows`` (count-rows.count), ``header``
(count-rows.header).

Expected (defaults name="world", rows=4, punctuation and header absent): run SUCCEEDED; every task
SUCCEEDED; greet.greeting == "Hello, world!"; greeting == "Hello, world!"; the dataset file is exactly
"i,square\\n0,0\\n1,1\\n2,4\\n3,9\\n"; rows == 4; header == "i,square".
``punctuation="?"``: greet.greeting still "Hello, world!", greeting == "Hello, world?".
``header="n,n2", rows=2``: dataset "n,n2\\n0,0\\n1,1\\n", rows == 2, header == "n,n2".

kfp.local cannot run this pipeline with the SubprocessRunner ("The SubprocessRunner only supports
running Lightweight Python Components"); only its DockerRunner can. Before that, kfp.local 2.17.3 already
fails when an ``Optional[...] = None`` pipeline input is left out (``ValueError: Unknown value type``).
The three commands were checked by hand with the arguments a runner would resolve.
"""
from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Output, OutputPath

MAKE_DATASET_SH = """set -e
header="i,square"
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --header) header="$2"; shift 2 ;;
    *) echo "make-dataset: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$(dirname "$out")"
echo "$header" > "$out"
i=0
while [ "$i" -lt "$rows" ]; do
  echo "$i,$((i * i))" >> "$out"
  i=$((i + 1))
done
echo "wrote $rows rows to $out"
"""

COUNT_ROWS_PY = """import os, sys
data, count_file, header_file = sys.argv[1:4]
with open(data) as f:
    lines = f.read().splitlines()
for path, value in ((count_file, str(len(lines) - 1)), (header_file, lines[0])):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(value)
print(len(lines) - 1, "rows; header", lines[0])
"""


@dsl.container_component
def greet(name: str, greeting: OutputPath(str), punctuation: Optional[str] = None):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", 'mkdir -p "$(dirname "$1")" && printf "%s" "$0" > "$1" && echo "$0"'],
        args=[
            dsl.ConcatPlaceholder(
                [
                    "Hello, ",
                    name,
                    dsl.IfPresentPlaceholder(input_name="punctuation", then=punctuation, else_="!"),
                ]
            ),
            greeting,
        ],
    )


@dsl.container_component
def make_dataset(rows: int, data: Output[Dataset], header: Optional[str] = None):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", MAKE_DATASET_SH, "make-dataset"],
        args=[
            "--rows",
            rows,
            "--out",
            data.path,
            dsl.IfPresentPlaceholder(input_name="header", then=["--header", header]),
        ],
    )


@dsl.container_component
def count_rows(data: Input[Dataset], count: OutputPath(int), header: OutputPath(str)):
    return dsl.ContainerSpec(
        image="python:3.11",
        command=["python3", "-c", COUNT_ROWS_PY],
        args=[data.path, count, header],
    )


@dsl.pipeline(name="container-components")
def pipeline(
    name: str = "world",
    rows: int = 4,
    punctuation: Optional[str] = None,
    header: Optional[str] = None,
) -> NamedTuple("Outputs", [("greeting", str), ("rows", int), ("header", str)]):
    greet(name=name)
    greeting = greet(name=name, punctuation=punctuation)
    dataset = make_dataset(rows=rows, header=header)
    counted = count_rows(data=dataset.outputs["data"])
    outputs = NamedTuple("Outputs", [("greeting", str), ("rows", int), ("header", str)])
    return outputs(
        greeting=greeting.outputs["greeting"],
        rows=counted.outputs["count"],
        header=counted.outputs["header"],
    )


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {
            "greet": "SUCCEEDED",
            "greet-2": "SUCCEEDED",
            "make-dataset": "SUCCEEDED",
            "count-rows": "SUCCEEDED",
        },
        "task_outputs": {
            "greet": {"greeting": "Hello, world!"},
            "greet-2": {"greeting": "Hello, world!"},
            "count-rows": {"count": 4, "header": "i,square"},
        },
        "artifact_contents": {"make-dataset": {"data": "i,square\n0,0\n1,1\n2,4\n3,9\n"}},
        "outputs": {"greeting": "Hello, world!", "rows": 4, "header": "i,square"},
    },
    {
        "params": {"punctuation": "?"},
        "state": "SUCCEEDED",
        "task_outputs": {
            "greet": {"greeting": "Hello, world!"},
            "greet-2": {"greeting": "Hello, world?"},
        },
        "outputs": {"greeting": "Hello, world?", "rows": 4, "header": "i,square"},
    },
    {
        "params": {"header": "n,n2", "rows": 2},
        "state": "SUCCEEDED",
        "artifact_contents": {"make-dataset": {"data": "n,n2\n0,0\n1,1\n"}},
        "outputs": {"greeting": "Hello, world!", "rows": 2, "header": "n,n2"},
    },
]
