"""Seeded structural mutations of a JSON document (for fuzzing the files quant reads back).

Each mutation picks one place in the document (the root included) and changes its structure: delete a
key, set null / a string / a list / an object / a boolean / a huge or negative number, wrap it in a
list, turn an object into the list of its values, rename a key; or damages the bytes: invalid UTF-8,
a truncation, 1e999 (parsed as inf), NaN. Returns the new file content as bytes.
"""
from __future__ import annotations

import copy
import json
import random

REPLACEMENTS = [None, "x", "", [], {}, True, False, 0, -1, 1e308, 10**30, -(10**30), 0.5, [1, 2], {"a": 1}]


def _places(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:4]):
            yield from _places(item, path + (index,))


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def mutate(document, rng: random.Random) -> bytes:
    """One random mutation of ``document`` (a parsed JSON value), serialized."""
    kind = rng.random()
    if kind < 0.08:  # byte-level damage
        text = json.dumps(document, indent=2).encode()
        choice = rng.randrange(4)
        if choice == 0:
            position = rng.randrange(len(text))
            return text[:position] + b"\xff\xfe" + text[position + 1:]
        if choice == 1:
            return text[: rng.randrange(len(text))]
        if choice == 2:
            return text.replace(b"0.", b"1e999 ", 1) if b"0." in text else b"1e999"
        return text.replace(b": 0", b": NaN", 1) if b": 0" in text else b"NaN"
    doc = copy.deepcopy(document)
    places = list(_places(doc))
    path = rng.choice(places)
    if not path:
        return json.dumps(rng.choice([None, [], "x", [doc], 3])).encode()
    parent, key = _get(doc, path[:-1]), path[-1]
    value = parent[key]
    action = rng.randrange(6)
    if action == 0 and isinstance(parent, dict):
        del parent[key]
    elif action == 1:
        parent[key] = [value]
    elif action == 2 and isinstance(value, dict):
        parent[key] = list(value.values())
    elif action == 3 and isinstance(parent, dict):
        parent[f"{key}_renamed"] = parent.pop(key)
    else:
        parent[key] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return json.dumps(doc, indent=2).encode()
