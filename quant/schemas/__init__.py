"""JSON Schemas (draft 2020-12) of the files quant writes, installed as package data.

Every file carries ``"schema"`` (the schema's ``$id``, e.g. ``quant/schemas/gate.schema.json``) and
``"format_version"`` (an integer, raised when a field changes meaning or goes away).

Units, the same in every file: top-k accuracy and argmax agreement in percent of samples (0..100); an
absolute drop of them in percentage points (``"pp"``); a relative drop in ``"% of FP32"``; SQNR in dB;
cosine similarity unitless. A metric value says its unit in ``unit`` and a drop in ``drop_unit``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

FORMAT_VERSION = 1
KINDS = ("eval", "gate", "sensitivity", "fallback", "summary", "quant")


def schema_id(kind: str) -> str:
    """The ``$id`` of a file kind's schema, also written into each file as ``"schema"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown file kind '{kind}' (known: {', '.join(KINDS)})")
    return f"quant/schemas/{kind}.schema.json"


def stamp(kind: str, content: dict) -> dict:
    """``content`` with ``schema`` and ``format_version`` first."""
    return {"schema": schema_id(kind), "format_version": FORMAT_VERSION, **content}


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    """The JSON Schema of a file kind (eval, gate, sensitivity, fallback, summary, quant)."""
    schema_id(kind)
    return json.loads(resources.files(__name__).joinpath(f"{kind}.schema.json").read_text(encoding="utf-8"))
