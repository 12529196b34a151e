"""Firth's bias-reduced logistic regression on grouped binomial counts (pure math).

Why by hand: statsmodels fits the ordinary binomial GLM, whose maximum likelihood does
not exist when a level's cells are all 0/n or all n/n (separation: the estimate runs off
to infinity). Those cells are the common case here (a control chance that always or
never hangs, a configuration that never hung in 200 runs). Firth (1993) maximises the
log-likelihood plus half the log-determinant of the Fisher information (the Jeffreys
prior), which keeps every estimate finite and removes the O(1/n) bias; Heinze and
Schemper (2002) showed it on separated data, and R's logistf implements it the same
way: Newton steps on the modified score with step halving on the penalised likelihood.

For grouped data (``hangs`` of ``runs`` per row) with ``W = runs p (1 - p)`` and
``h`` the diagonal of the hat matrix ``W^1/2 x (x'WX)^-1 x' W^1/2``, the modified score is
``x' (hangs - runs p + h (1/2 - p))``. Rows with the same covariates may be summed
first: the likelihood and the information are sums over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit  # type: ignore[import-untyped]

Array = NDArray[np.float64]
MAX_STEP = 5.0  # logistf's maxstep: no coefficient moves more than this per iteration
_TRUST = 1e-4  # steps this small are taken without the halving check
_ESCAPES = 5
_CHECKED = 20_000
_BUMP = 1e-5
_FLAT = 1e-6  # curvature below this share of the largest is flat, not a saddle


class FirthError(ArithmeticError):
    """The information matrix is singular: a column is aliased (drop it first)."""


@dataclass(frozen=True)
class FirthFit:
    coef: Array
    cov: Array  # inverse Fisher information at the estimate (unscaled)
    penalized_loglik: float
    iterations: int


def penalized_loglik(x: Array, hangs: Array, runs: Array, coef: Array) -> float:
    """log L(b) + 1/2 log det I(b): what the fit maximises (and what a check maximises
    independently with scipy.optimize)."""
    eta = x @ coef
    loglik = float(np.sum(hangs * eta - runs * np.logaddexp(0.0, eta)))
    p = expit(eta)
    w = runs * p * (1.0 - p)
    sign, logdet = np.linalg.slogdet(x.T @ (w[:, None] * x))
    if sign <= 0:
        return -np.inf
    return loglik + 0.5 * float(logdet)


def fit(
    x: Array,
    hangs: Array,
    runs: Array,
    *,
    fixed_zero: Sequence[int] = (),
    max_iter: int = 200,
    tol: float = 1e-8,
) -> FirthFit:
    """The Firth-penalised estimate. ``x`` must have full column rank (explain drops
    aliased columns before calling). Raises FirthError when it does not converge.

    ``fixed_zero``: columns whose coefficients stay 0 while the penalty keeps the full
    ``x`` (the restricted fit of the penalised likelihood-ratio test, as logistf's
    ``drop1`` does: a reduced model with its own, smaller penalty is not nested)."""
    free = np.ones(x.shape[1], dtype=bool)
    free[list(fixed_zero)] = False
    coef = np.zeros(x.shape[1])
    for _escape in range(_ESCAPES):
        coef, cov, current, iterations = _ascend(x, hangs, runs, coef, free, max_iter, tol)
        if iterations > max_iter:  # scoring crawls (a flat ridge): Newton on the Hessian
            coef, cov, current = _newton(x, hangs, runs, coef, free, tol)
        # Fisher scoring finds a zero of the modified score; the penalised likelihood is
        # not concave, and in small symmetric tables that zero can be a saddle. Step off
        # along the direction of positive curvature, if any, and climb again.
        away = (
            None if _concave_enough(x, cov, free) else _uphill(x, hangs, runs, coef, free, current)
        )
        if away is None:
            return FirthFit(coef, cov, current, iterations)
        coef = away
    raise FirthError(f"still on a saddle after {_ESCAPES} escapes")


def _score(x: Array, hangs: Array, runs: Array, coef: Array) -> tuple[Array, Array, Array]:
    """The modified score, the information and its inverse at ``coef``."""
    p = expit(x @ coef)
    w = runs * p * (1.0 - p)
    info = x.T @ (w[:, None] * x)
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError as exc:
        raise FirthError("the information matrix is singular") from exc
    h = w * np.sum((x @ cov) * x, axis=1)
    return x.T @ (hangs - runs * p + h * (0.5 - p)), info, cov


def _ascend(
    x: Array,
    hangs: Array,
    runs: Array,
    coef: Array,
    free: NDArray[np.bool_],
    max_iter: int,
    tol: float,
) -> tuple[Array, Array, float, int]:
    """Fisher scoring on the modified score with step halving (logistf's algorithm)."""
    current = penalized_loglik(x, hangs, runs, coef)
    for iteration in range(1, max_iter + 1):
        score, info, cov = _score(x, hangs, runs, coef)
        step = np.zeros_like(coef)
        step[free] = np.linalg.solve(info[np.ix_(free, free)], score[free])
        largest = float(np.max(np.abs(step), initial=0.0))
        if largest < tol:  # the full step is nil: the modified score is zero
            return coef, cov, current, iteration
        if largest > MAX_STEP:
            step *= MAX_STEP / largest
        for _halving in range(40):
            trial = penalized_loglik(x, hangs, runs, coef + step)
            # Near the optimum the gain is below the sum's rounding: take the step.
            if trial >= current or largest < _TRUST:
                break
            step /= 2.0
        else:
            raise FirthError("the penalised likelihood does not increase along the step")
        coef = coef + step
        current = trial
    return coef, _score(x, hangs, runs, coef)[2], current, max_iter + 1


def _hessian(x: Array, hangs: Array, runs: Array, coef: Array, index: NDArray[np.intp]) -> Array:
    """The penalised likelihood's Hessian over ``index``, by central differences of the
    modified score (its gradient)."""
    hessian = np.zeros((index.size, index.size))
    for k, j in enumerate(index):
        bump = np.zeros_like(coef)
        bump[j] = _BUMP
        up = _score(x, hangs, runs, coef + bump)[0]
        down = _score(x, hangs, runs, coef - bump)[0]
        hessian[:, k] = (up - down)[index] / (2 * _BUMP)
    return (hessian + hessian.T) / 2


def _newton(
    x: Array, hangs: Array, runs: Array, coef: Array, free: NDArray[np.bool_], tol: float
) -> tuple[Array, Array, float]:
    index = np.flatnonzero(free)
    for _iteration in range(50):
        score = _score(x, hangs, runs, coef)[0]
        hessian = _hessian(x, hangs, runs, coef, index)
        if np.linalg.eigvalsh(hessian)[-1] >= 0:
            break  # not concave here: leave it to the saddle escape
        step = -np.linalg.solve(hessian, score[index])
        coef = coef.copy()
        coef[index] += step
        if float(np.max(np.abs(step))) < tol:
            return coef, _score(x, hangs, runs, coef)[2], penalized_loglik(x, hangs, runs, coef)
    raise FirthError("no convergence")


def _concave_enough(x: Array, cov: Array, free: NDArray[np.bool_]) -> bool:
    """True when a zero of the score is taken as the maximum without the Hessian check
    (p score evaluations): when the information dwarfs the penalty's curvature, which is
    of the order of the number of coefficients (a 10-fold margin), or when the table is
    large (more than _CHECKED cells x coefficients: the check would cost seconds). The
    saddles found (hypothesis, test_explain_model) were in small symmetric tables with
    almost no hangs, where the check is cheap; a large table is not checked, a known
    limit (docs/statistics.md)."""
    index = np.flatnonzero(free)
    if x.shape[0] * index.size > _CHECKED:
        return True
    smallest = 1.0 / float(np.linalg.eigvalsh(cov[np.ix_(index, index)])[-1])
    return smallest > 10.0 * max(1, index.size)


def _uphill(
    x: Array, hangs: Array, runs: Array, coef: Array, free: NDArray[np.bool_], current: float
) -> Array | None:
    """A point with a higher penalised likelihood near ``coef`` along the direction of
    largest curvature (the Hessian by central differences of the score), or None when
    ``coef`` is a local maximum."""
    index = np.flatnonzero(free)
    values, vectors = np.linalg.eigh(_hessian(x, hangs, runs, coef, index))
    if values[-1] <= _FLAT * max(1.0, float(np.max(np.abs(values)))):
        return None
    for size in (1.0, 0.5, 0.25, 0.1, 0.05, 0.01):
        for sign in (1.0, -1.0):
            trial = coef.copy()
            trial[index] += sign * size * vectors[:, -1]
            if penalized_loglik(x, hangs, runs, trial) > current + 1e-12:
                return trial
    return None
