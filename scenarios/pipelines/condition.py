"""dsl.If on task outputs, including an If nested inside another If.

Tasks (names as compiled):

- ``flip-coin``: returns "heads" when ``seed`` is even, "tails" when odd (deterministic).
- ``condition-1`` (``flip-coin.Output == 'heads'``) holds ``pick-number`` (returns ``n``) and two nested
  groups over its int output: ``condition-2`` (``int(pick-number.Output) > threshold``) holds
  ``announce`` and ``condition-3`` (``int(pick-number.Output) <= threshold``) holds ``announce-2``.
- ``condition-4`` (``flip-coin.Output == 'tails'``) holds ``announce-3``.
- ``announce*`` return their message.

Pipeline output: ``Output`` = the coin (``flip-coin.Output``).

Expected (defaults seed=0, n=5, threshold=3): run SUCCEEDED; flip-coin, pick-number, announce
SUCCEEDED with announce.Output == "heads and big"; announce-2 and announce-3 SKIPPED; Output == "heads".
``threshold=7``: announce SKIPPED, announce-2 SUCCEEDED ("heads and small"), announce-3 SKIPPED.
``seed=1``: pick-number, announce, announce-2 SKIPPED (the whole heads branch, nested groups included);
announce-3 SUCCEEDED ("tails"); Output == "tails".
"""
from kfp import dsl


@dsl.component(base_image="python:3.11")
def flip_coin(seed: int) -> str:
    return "heads" if seed % 2 == 0 else "tails"


@dsl.component(base_image="python:3.11")
def pick_number(n: int) -> int:
    return n


@dsl.component(base_image="python:3.11")
def announce(msg: str) -> str:
    print(msg)
    return msg


@dsl.pipeline(name="condition")
def pipeline(seed: int = 0, n: int = 5, threshold: int = 3) -> str:
    flip = flip_coin(seed=seed)
    with dsl.If(flip.output == "heads"):
        number = pick_number(n=n)
        with dsl.If(number.output > threshold):
            announce(msg="heads and big")
        with dsl.If(number.output <= threshold):
            announce(msg="heads and small")
    with dsl.If(flip.output == "tails"):
        announce(msg="tails")
    return flip.output


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {
            "flip-coin": "SUCCEEDED",
            "pick-number": "SUCCEEDED",
            "announce": "SUCCEEDED",
            "announce-2": "SKIPPED",
            "announce-3": "SKIPPED",
        },
        "task_outputs": {"pick-number": {"Output": 5}, "announce": {"Output": "heads and big"}},
        "outputs": {"Output": "heads"},
    },
    {
        "params": {"threshold": 7},
        "state": "SUCCEEDED",
        "tasks": {
            "flip-coin": "SUCCEEDED",
            "pick-number": "SUCCEEDED",
            "announce": "SKIPPED",
            "announce-2": "SUCCEEDED",
            "announce-3": "SKIPPED",
        },
        "task_outputs": {"announce-2": {"Output": "heads and small"}},
        "outputs": {"Output": "heads"},
    },
    {
        "params": {"seed": 1},
        "state": "SUCCEEDED",
        "tasks": {
            "flip-coin": "SUCCEEDED",
            "pick-number": "SKIPPED",
            "announce": "SKIPPED",
            "announce-2": "SKIPPED",
            "announce-3": "SUCCEEDED",
        },
        "task_outputs": {"announce-3": {"Output": "tails"}},
        "outputs": {"Output": "tails"},
    },
]
