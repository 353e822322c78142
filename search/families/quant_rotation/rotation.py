"""Rotation matrices: random orthogonal, (random) Hadamard, and the orthogonality check.

``scipy.linalg.hadamard`` only builds power-of-two sizes. For a size n = 2^k * m with odd m > 1
we use the Kronecker product of a 2^k Hadamard with a seeded random orthogonal m x m block: it is
orthogonal and still spreads outliers across each 2^k block, but it is "Hadamard-like", not a
true Hadamard matrix (and m = n, i.e. plain random orthogonal, when n is odd).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.linalg import hadamard
from scipy.stats import ortho_group
from torch import Tensor

from hilnas.errors import UserError

RotationKind = Literal["none", "random_orthogonal", "random_hadamard", "learned"]
ROTATION_KINDS: tuple[str, ...] = ("none", "random_orthogonal", "random_hadamard", "learned")


def random_orthogonal(n: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-distributed n x n orthogonal matrix, reproducible from ``seed``."""
    if n == 1:
        return torch.ones(1, 1, dtype=dtype)
    return torch.from_numpy(ortho_group.rvs(n, random_state=seed)).to(dtype)


def hadamard_like(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalised n x n Hadamard matrix (orthogonal); see the module docstring for other sizes."""
    power = n & -n  # largest power of two dividing n
    block = torch.from_numpy(hadamard(power).astype(np.float64)) / np.sqrt(power)
    rest = n // power
    if rest == 1:
        return block.to(dtype)
    return torch.kron(block, random_orthogonal(rest, seed)).to(dtype)


def random_hadamard(n: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """QuaRot's randomised Hadamard: H times a seeded random +-1 diagonal (on the input side)."""
    signs = torch.from_numpy(np.random.default_rng(seed).choice([-1.0, 1.0], size=n))
    return (signs[:, None] * hadamard_like(n, seed)).to(dtype)


def make_rotation(kind: str, n: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor | None:
    """The starting matrix of a rotation kind (None for "none"; "learned" starts at a random Hadamard)."""
    if kind == "none":
        return None
    if kind == "random_orthogonal":
        return random_orthogonal(n, seed, dtype)
    if kind in ("random_hadamard", "learned"):
        return random_hadamard(n, seed, dtype)
    raise UserError(f"Unknown rotation kind {kind!r}; choose one of {', '.join(ROTATION_KINDS)}.")


def check_orthogonal(matrix: Tensor, name: str = "rotation", tolerance: float = 1e-4) -> None:
    """Raise a ``UserError`` unless ``matrix`` is square and orthogonal (R^T R = I within ``tolerance``)."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise UserError(f"The {name} must be a square matrix, got shape {tuple(matrix.shape)}.")
    m = matrix.double()
    error = (m.T @ m - torch.eye(m.shape[0], dtype=torch.float64)).abs().max().item()
    if error > tolerance:
        raise UserError(f"The {name} is not orthogonal (max |R^T R - I| = {error:.2e} > {tolerance:g}).")
