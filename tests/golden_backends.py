"""Backends whose outputs golden cases record. Each takes a Model and returns {relative file name: text}."""

from __future__ import annotations

BACKENDS: list = []
