"""Lowering: the resolved `Model` → the model the backends render, through a tuple of passes.

Input: a model from `resolve`. Output: a model whose destinations are all kinds the emitters know.
Each pass is a pure `Model -> Model` function (sqlglot's shape); they run in order. A destination
kind that only some stage understands (e.g. a fork of a workload that meshforge renders itself)
lowers here to kinds every backend knows, plus the objects to render, so emitters never see it.
"""

from __future__ import annotations

from typing import Callable

from .model import Model

Pass = Callable[[Model], Model]

PASSES: tuple[Pass, ...] = ()


def lower(model: Model, passes: tuple[Pass, ...] = PASSES) -> Model:
    for p in passes:
        model = p(model)
    return model
