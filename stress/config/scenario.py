"""Scenario shocks turned into per-month affine maps of the baseline quantities.

Every shock on a path target is ``x -> a(t) x + b(t)`` with the weight w(t) of ShockConfig:
``add``: a = 1, b = value w; ``mul``: a = 1 + (value - 1) w, b = 0; ``set``: a = 1 - w, b = value w.
Several shocks on one target compose in the order they are listed. Scalar targets (launch month or
step, ``pd_multiplier``) take the full shock (w = 1) whatever their months.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .schema import ShockConfig


def weight(shock: ShockConfig, months: np.ndarray) -> np.ndarray:
    """w(t) in [0, 1]: 0 before start_month, linear over ramp_months, 0 after end_month."""
    t = np.asarray(months, dtype=float)
    ramp = max(shock.ramp_months, 0)
    if ramp == 0:
        w = (t >= shock.start_month).astype(float)
    else:
        w = np.clip((t - shock.start_month + 1) / ramp, 0.0, 1.0)
    if shock.end_month is not None:
        w = np.where(t > shock.end_month, 0.0, w)
    return w


def _affine_one(kind: str, value: float, w):
    if kind == "add":
        return np.ones_like(w), value * w
    if kind == "mul":
        return 1.0 + (value - 1.0) * w, np.zeros_like(w)
    if kind == "set":
        return 1.0 - w, value * w
    raise ValueError(f"unknown shock kind {kind!r}")  # validated in config.validate


def affine(shocks: Iterable[ShockConfig], target: str, months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) over ``months`` such that the shocked value is a * baseline + b."""
    a = np.ones(len(months))
    b = np.zeros(len(months))
    for shock in shocks:
        if shock.target == target:
            sa, sb = _affine_one(shock.kind, shock.value, weight(shock, months))
            a, b = sa * a, sa * b + sb
    return a, b


def shocked_scalar(shocks: Iterable[ShockConfig], target: str, base: float) -> float:
    """A scalar target (launch month or step, pd multiplier) after all its shocks, in full."""
    x = float(base)
    one = np.ones(1)
    for shock in shocks:
        if shock.target == target:
            a, b = _affine_one(shock.kind, shock.value, one)
            x = float(a[0] * x + b[0])
    return x


def shocked_path(shocks: Iterable[ShockConfig], target: str, base, months: np.ndarray) -> np.ndarray:
    """A deterministic path target (power price, base rate, haircut) after its shocks.
    ``base`` broadcasts against months on the last axis."""
    a, b = affine(shocks, target, months)
    return a * np.asarray(base, dtype=float) + b
