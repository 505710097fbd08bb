"""The Fellegi-Sunter model: m and u probabilities per comparison level, a prior, EM.

For a pair with comparison vector g (one level per field), the match weight is

    w = log2(prior / (1 - prior)) + Σ_f log2(m_f[g_f] / u_f[g_f])  (+ term-frequency terms)

and the match probability is 1 / (1 + 2^-w). A field whose level is NULL_LEVEL (a value missing
on either side) adds nothing. m_f[l] = P(level l | the pair is the same person), u_f[l] =
P(level l | different people).

Estimation, unsupervised:
- u by random sampling: random pairs of records are almost all different people, so the level
  frequencies among them estimate u (`estimate_u`);
- m, u and the prior by expectation-maximization over the blocked candidate pairs, starting
  from the sampled u (`expectation_maximization`). The pairs are first collapsed to their
  distinct comparison vectors with counts, so each iteration costs O(distinct vectors).
  Because the model is fitted on the blocked pairs, the prior is the share of candidate pairs
  that match and u describes non-matching candidates (which agree more often than random
  pairs: they share a blocking key), which is what scoring those same pairs needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matching.comparators import NULL_LEVEL

# No m is below M_FLOOR: one surprising level must not veto a pair on its own (at most about
# 20 bits against). u may be far smaller: agreeing on a rare combination is strong evidence.
M_FLOOR = 1e-6
U_FLOOR = 1e-12


@dataclass
class Parameters:
    """m and u per field (arrays indexed by level) and the prior among candidate pairs."""

    prior: float
    m: list[np.ndarray]
    u: list[np.ndarray]

    def to_json(self, names: Sequence[str]) -> dict[str, object]:
        return {
            "prior": float(self.prior),
            "fields": {
                name: {"m": [float(x) for x in m], "u": [float(x) for x in u]}
                for name, m, u in zip(names, self.m, self.u, strict=True)
            },
        }

    @classmethod
    def from_json(
        cls, data: dict[str, object], names: Sequence[str], sizes: Sequence[int]
    ) -> Parameters:
        fields = data.get("fields")
        prior = data.get("prior")
        if not isinstance(fields, dict) or not isinstance(prior, int | float):
            raise ValueError("parameters need a prior and fields")
        m, u = [], []
        for name, size in zip(names, sizes, strict=True):
            entry = fields.get(name)
            if not isinstance(entry, dict):
                raise ValueError(f"no parameters for field {name!r}")
            mf, uf = (np.asarray(entry.get(k), dtype=float) for k in ("m", "u"))
            if mf.shape != (size,) or uf.shape != (size,):
                raise ValueError(f"field {name!r} needs {size} m and u values")
            finite = np.isfinite(mf).all() and np.isfinite(uf).all()
            if not finite or (mf < 0).any() or (uf < 0).any() or mf.sum() <= 0 or uf.sum() <= 0:
                raise ValueError(f"field {name!r}: m and u must be non-negative probabilities")
            m.append(normalized(mf))
            u.append(normalized(uf, U_FLOOR))
        if not 0 < float(prior) < 1:
            raise ValueError("the prior must be between 0 and 1")
        return cls(prior=float(prior), m=m, u=u)


def normalized(values: np.ndarray, floor: float = M_FLOOR) -> np.ndarray:
    values = np.clip(values, floor, None)
    return values / values.sum()


def default_m(size: int) -> np.ndarray:
    """A starting point for EM: matches mostly agree exactly, rarely disagree."""
    if size == 1:
        return np.ones(1)
    m = np.full(size, 0.1 / (size - 1))
    m[0] = 0.9
    return normalized(m)


PSEUDO_PAIRS = 1000.0


def level_frequencies(
    levels: np.ndarray, sizes: Sequence[int], prior: Sequence[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Per column, the share of each level among the pairs where it is not null, smoothed
    with PSEUDO_PAIRS pairs distributed as `prior` (default: uniform): a level never seen in
    the sample is rare, not impossible, and a small sample leans on the prior."""
    out = []
    for f, size in enumerate(sizes):
        column = levels[:, f]
        column = column[column != NULL_LEVEL]
        counts = np.bincount(column.astype(np.int64), minlength=size)[:size].astype(float)
        base = np.full(size, 1.0 / size) if prior is None else prior[f]
        out.append(normalized(counts + PSEUDO_PAIRS * base, U_FLOOR))
    return out


def disagreement_prior(size: int) -> np.ndarray:
    """What random pairs look like before any is seen: they disagree (the last level)."""
    u = np.full(size, 1e-3)
    u[-1] = 1.0 - 1e-3 * (size - 1)
    return u


def collapse(levels: np.ndarray, sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct comparison vectors, their counts, and each pair's vector index."""
    radix = np.asarray([s + 1 for s in sizes], dtype=np.int64)
    place = np.ones(len(sizes), dtype=np.int64)
    for f in range(len(sizes) - 2, -1, -1):
        place[f] = place[f + 1] * radix[f + 1]
    keys = (levels.astype(np.int64) + 1) @ place
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    patterns = np.empty((len(unique), len(sizes)), dtype=np.int8)
    rest = unique.copy()
    for f in range(len(sizes)):
        patterns[:, f] = rest // place[f] - 1
        rest = rest % place[f]
    return patterns, counts.astype(float), inverse


def _log_likelihoods(patterns: np.ndarray, probabilities: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(len(patterns))
    for f, p in enumerate(probabilities):
        column = patterns[:, f]
        present = column != NULL_LEVEL
        total[present] += np.log(p[column[present].astype(np.int64)])
    return total


@dataclass(frozen=True)
class EmResult:
    parameters: Parameters
    iterations: int
    converged: bool


def expectation_maximization(
    patterns: np.ndarray,
    counts: np.ndarray,
    start: Parameters,
    *,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
    fix_u: bool = False,
) -> EmResult:
    """Fit m, u (unless `fix_u`) and the prior to the distinct comparison vectors."""
    m = [x.copy() for x in start.m]
    u = [x.copy() for x in start.u]
    prior = float(np.clip(start.prior, 1e-6, 1 - 1e-6))
    total = counts.sum()
    iterations, converged = 0, False
    if total == 0:
        return EmResult(Parameters(prior, m, u), 0, True)
    for iterations in range(1, max_iterations + 1):  # noqa: B007 — reported after the loop
        log_m = _log_likelihoods(patterns, m) + np.log(prior)
        log_u = _log_likelihoods(patterns, u) + np.log(1 - prior)
        posterior = 1.0 / (1.0 + np.exp(np.clip(log_u - log_m, -700, 700)))
        weight_m, weight_u = posterior * counts, (1 - posterior) * counts
        new_prior = float(np.clip(weight_m.sum() / total, 1e-6, 1 - 1e-6))
        change = abs(new_prior - prior)
        new_m, new_u = [], []
        for f, size in enumerate(len(x) for x in m):
            column = patterns[:, f]
            present = column != NULL_LEVEL
            index = column[present].astype(np.int64)
            fm = np.bincount(index, weights=weight_m[present], minlength=size)[:size]
            fu = np.bincount(index, weights=weight_u[present], minlength=size)[:size]
            fm = normalized(fm) if fm.sum() > 0 else m[f]
            fu = u[f] if fix_u or fu.sum() <= 0 else normalized(fu, U_FLOOR)
            change = max(change, float(np.abs(fm - m[f]).max()), float(np.abs(fu - u[f]).max()))
            new_m.append(fm)
            new_u.append(fu)
        m, u, prior = new_m, new_u, new_prior
        if change < tolerance:
            converged = True
            break
    return EmResult(Parameters(prior, m, u), iterations, converged)


def estimate_prior(
    evidence: np.ndarray, total_pairs: float, *, max_iterations: int = 200, tolerance: float = 1e-9
) -> tuple[float, int]:
    """λ such that λ * total_pairs is the expected number of matches among the candidate pairs
    (bits of evidence each) when every pair outside them is a non-match: a fixed point."""
    if total_pairs <= 0 or len(evidence) == 0:
        return 1e-6, 0
    prior = min(0.5, max(1e-9, 1.0 / total_pairs))
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        weight = evidence + prior_weight(prior)
        posterior = 1.0 / (1.0 + np.exp2(-np.clip(weight, -1000, 1000)))
        new = float(np.clip(posterior.sum() / total_pairs, 1e-12, 0.5))
        if abs(new - prior) <= tolerance * max(prior, 1e-12):
            return new, iterations
        prior = new
    return prior, iterations


def level_weights(parameters: Parameters) -> list[np.ndarray]:
    """log2(m / u) per field and level: the evidence each level carries, in bits."""
    return [np.log2(m / u) for m, u in zip(parameters.m, parameters.u, strict=True)]


def prior_weight(prior: float) -> float:
    return float(np.log2(prior / (1 - prior)))


def score(
    levels: np.ndarray, parameters: Parameters, adjustments: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(match weight, match probability, per-field weights) of each pair."""
    weights = level_weights(parameters)
    per_field = np.zeros(levels.shape, dtype=np.float64)
    for f, w in enumerate(weights):
        column = levels[:, f]
        present = column != NULL_LEVEL
        per_field[present, f] = w[column[present].astype(np.int64)]
    if adjustments is not None:
        per_field += adjustments
    total = per_field.sum(axis=1) + prior_weight(parameters.prior)
    probability = 1.0 / (1.0 + np.exp2(-np.clip(total, -1000, 1000)))
    return total, probability, per_field
