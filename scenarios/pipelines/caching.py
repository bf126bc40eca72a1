"""Caching on and off: which tasks a second identical run takes from the cache.

``stamp`` returns ``"<label>:<salt>:<random uuid4 hex>"`` and writes the same text into Output[Artifact]
``note``, so two executions never produce the same value: equal outputs across runs mean the second run
reused the first one's outputs.

Tasks (names as compiled):

- ``stamp`` (label "cached", ``salt``): caching on (the SDK default, ``cachingOptions: {enableCache: true}``).
- ``stamp-2`` (label "uncached"): ``set_caching_options(False)`` -> ``cachingOptions: {}``.
- ``stamp-3`` (label "keyed"): ``set_caching_options(True, cache_key="scenario-caching-v1")``; with a custom
  key the inputs (including ``salt``) do not take part in the cache key.
- ``combine``: caching on; returns ``"<stamp.Output>|<stamp-2.Output>"``.

Pipeline outputs: ``cached``, ``uncached``, ``keyed``, ``combined``.

Expected: the first run in a fresh workspace: run SUCCEEDED, all four tasks run (SUCCEEDED, none
cached). A second run with the same parameters in the same workspace: run SUCCEEDED; ``stamp`` and
``stamp-3`` are cache hits (not executed, shown as cached; their outputs and the ``note`` artifacts
equal the first run's); ``stamp-2`` runs again and returns a new value; ``combine`` runs again because
its input from ``stamp-2`` changed. A third run with ``salt="x"``: ``stamp`` runs (new input),
``stamp-3`` is still a cache hit (custom key), ``stamp-2`` and ``combine`` run. With caching disabled
for the whole run (``--no-cache``) every task runs.

kfp.local (``local.init(..., enable_caching=True, cache_root=...)``) gives exactly these hits over the
three runs.
"""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output


@dsl.component(base_image="python:3.11")
def stamp(label: str, salt: str, note: Output[Artifact]) -> str:
    import uuid

    value = f"{label}:{salt}:{uuid.uuid4().hex}"
    with open(note.path, "w") as f:
        f.write(value)
    print(value)
    return value


@dsl.component(base_image="python:3.11")
def combine(a: str, b: str) -> str:
    return f"{a}|{b}"


@dsl.pipeline(name="caching")
def pipeline(salt: str = "") -> NamedTuple(
    "Outputs", [("cached", str), ("uncached", str), ("keyed", str), ("combined", str)]
):
    cached = stamp(label="cached", salt=salt)
    cached.set_caching_options(True)
    uncached = stamp(label="uncached", salt=salt)
    uncached.set_caching_options(False)
    keyed = stamp(label="keyed", salt=salt)
    keyed.set_caching_options(True, cache_key="scenario-caching-v1")
    both = combine(a=cached.outputs["Output"], b=uncached.outputs["Output"])
    outputs = NamedTuple(
        "Outputs", [("cached", str), ("uncached", str), ("keyed", str), ("combined", str)]
    )
    return outputs(
        cached=cached.outputs["Output"],
        uncached=uncached.outputs["Output"],
        keyed=keyed.outputs["Output"],
        combined=both.output,
    )


# Runs in sequence in one workspace; "cache_hits" lists the tasks whose outputs must equal the previous
# run's (not executed); every other task executes.
EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {
            "stamp": "SUCCEEDED",
            "stamp-2": "SUCCEEDED",
            "stamp-3": "SUCCEEDED",
            "combine": "SUCCEEDED",
        },
        "cache_hits": [],
    },
    {"params": {}, "state": "SUCCEEDED", "cache_hits": ["stamp", "stamp-3"]},
    {"params": {"salt": "x"}, "state": "SUCCEEDED", "cache_hits": ["stamp-3"]},
]
