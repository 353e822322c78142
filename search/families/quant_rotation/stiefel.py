"""Cayley SGD with momentum on the Stiefel manifold (Jun Li, Li Fuxin & Sinisa Todorovic,
ICLR 2020, "Efficient Riemannian optimization on the Stiefel manifold via the Cayley transform",
Algorithm 1).

The optimiser SpinQuant learns its rotations with. A parameter X (n x p, X^T X = I; here square
rotations) stays a plain tensor. Each step, from the Euclidean gradient G:

    M <- beta M - G                              momentum
    W^ <- M X^T - 1/2 X (X^T M X^T);  W = W^ - W^T   skew-symmetric: the direction, in the tangent space
    M <- W X                                     momentum projected onto the tangent space at X
    alpha = min(lr, 2 q / (||W||_F + eps))      bounded step (q = 1/2)
    X <- (I - alpha/2 W)^-1 (I + alpha/2 W) X    the Cayley transform

The paper estimates the transform with a fixed-point iteration (Y <- X + alpha/2 W (X + Y), two
rounds), which is orthogonal only up to its truncation error; here the n x n system is solved in
closed form in float64 instead (cheap for the sizes rotations have), so the Cayley matrix is
orthogonal to round-off and every iterate keeps X^T X = I. Hand-written because no maintained
library ships it: torch's ``orthogonal`` parametrization and geotorch trivialize the manifold
(a Euclidean optimiser on an unconstrained generator) rather than move X along it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

CONTRACTION = 0.5  # the paper's q: alpha * ||W|| / 2 <= q keeps each step a contraction
EPSILON = 1e-8


class CayleySGD(Optimizer):
    """Riemannian SGD with momentum for parameters with orthonormal columns (X^T X = I)."""

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.9) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate {lr} must be positive")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum {momentum} must lie in [0, 1)")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001 - torch's Optimizer signature
        """One Cayley step for every parameter that has a gradient (``closure`` is not supported)."""
        if closure is not None:
            raise ValueError("CayleySGD.step takes no closure")
        for group in self.param_groups:
            for x in group["params"]:
                if x.grad is not None:
                    self._update(x, group["lr"], group["momentum"])

    def _update(self, x: Tensor, lr: float, beta: float) -> None:
        state = self.state[x]
        point, gradient = x.double(), x.grad.double()
        momentum = beta * state.get("momentum", torch.zeros_like(point)) - gradient
        w_hat = momentum @ point.T - 0.5 * point @ (point.T @ momentum @ point.T)
        w = w_hat - w_hat.T
        state["momentum"] = w @ point
        alpha = min(lr, 2 * CONTRACTION / (torch.linalg.matrix_norm(w).item() + EPSILON))
        eye = torch.eye(w.shape[0], dtype=w.dtype)
        x.copy_(torch.linalg.solve(eye - alpha / 2 * w, (eye + alpha / 2 * w) @ point))
