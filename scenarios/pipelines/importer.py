"""dsl.importer of a file given as a pipeline parameter, with metadata, consumed by a component.

Parameters: ``uri`` (required, no default) is the file to import, either a ``file:///abs/path.csv``
URI or a plain absolute path; ``source`` (default "bundled") goes into the artifact metadata through a
pipeline channel.

Tasks (names as compiled):

- ``importer``: no container runs; produces one Dataset artifact named ``artifact`` with that URI,
  ``reimport=False``, metadata ``{"source": <source>, "format": "csv"}`` (``source`` compiled as the
  placeholder ``{{$.inputs.parameters['metadata']}}`` over the extra ``metadata`` input).
- ``summarize``: reads the imported file (``data.path``; a ``file://`` URI is turned into its path)
  and returns NamedTuple ``rows`` (lines after the first, the CSV header), ``source`` and ``fmt``
  (from ``data.metadata``).

Pipeline outputs: ``rows``, ``source``.

Expected, for a file holding "a,b\\n1,2\\n3,4\\n5,6\\n" passed as ``uri`` (either form): run SUCCEEDED;
importer and summarize SUCCEEDED; the importer artifact's URI equals the given ``uri`` and its
metadata is {"source": "bundled", "format": "csv"}; summarize outputs rows == 3,
source == "bundled", fmt == "csv". With ``source="lab"``: source == "lab". The imported file is read
in place, never modified. Leaving out ``uri`` is a missing-required-parameter error.
Each case assumes a fresh workspace: with ``reimport=False`` the backend may reuse the artifact
recorded by an earlier import of the same URI (pipelines-ir.md section 13), metadata included, and
``summarize`` would then be a cache hit returning the first run's ``source``.
"""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input


@dsl.component(base_image="python:3.11")
def summarize(data: Input[Dataset]) -> NamedTuple(
    "Summary", [("rows", int), ("source", str), ("fmt", str)]
):
    from urllib.parse import urlparse

    path = data.path
    if path.startswith("file://"):
        path = urlparse(path).path
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line]
    summary = NamedTuple("Summary", [("rows", int), ("source", str), ("fmt", str)])
    return summary(len(lines) - 1, data.metadata.get("source", ""), data.metadata.get("format", ""))


@dsl.pipeline(name="importer")
def pipeline(uri: str, source: str = "bundled") -> NamedTuple(
    "Outputs", [("rows", int), ("source", str)]
):
    imported = dsl.importer(
        artifact_uri=uri,
        artifact_class=Dataset,
        reimport=False,
        metadata={"source": source, "format": "csv"},
    )
    s = summarize(data=imported.output)
    outputs = NamedTuple("Outputs", [("rows", int), ("source", str)])
    return outputs(rows=s.outputs["rows"], source=s.outputs["source"])


# "<csv>" stands for a file the test writes with the content in "files"; pass it as a path or file:// URI.
EXPECTED = [
    {
        "files": {"<csv>": "a,b\n1,2\n3,4\n5,6\n"},
        "params": {"uri": "<csv>"},
        "state": "SUCCEEDED",
        "tasks": {"importer": "SUCCEEDED", "summarize": "SUCCEEDED"},
        "task_outputs": {"summarize": {"rows": 3, "source": "bundled", "fmt": "csv"}},
        "outputs": {"rows": 3, "source": "bundled"},
    },
    {
        "files": {"<csv>": "a,b\n1,2\n3,4\n5,6\n"},
        "params": {"uri": "<csv>", "source": "lab"},
        "state": "SUCCEEDED",
        "outputs": {"rows": 3, "source": "lab"},
    },
]
