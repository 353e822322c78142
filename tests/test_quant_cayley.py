"""Cayley SGD on the Stiefel manifold, and the SpinQuant rotations it learns through the quantized network."""

from __future__ import annotations

import pytest
import torch

from search.families.quant_rotation.cayley import learn_rotations
from search.families.quant_rotation.pipeline import Recipe, build_rotations, quantize
from search.families.quant_rotation.quantizers import QuantSpec
from search.families.quant_rotation.rotation import check_orthogonal, random_orthogonal
from search.families.quant_rotation.stiefel import CayleySGD
from search.families.quant_rotation.transform import fold_norms
from tests.quant_support import tiny_model

torch.set_num_threads(1)


def _orthogonality_error(x: torch.Tensor) -> float:
    return (x.T @ x - torch.eye(x.shape[1], dtype=x.dtype)).abs().max().item()


def _procrustes_target(n: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A = Q S with Q (n x p) orthonormal, det +1 when square, and S symmetric positive definite: the point
    of the Stiefel manifold nearest to A is Q (A's polar factor)."""
    q = random_orthogonal(n, seed=3)[:, :p]
    if n == p and torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]  # the Cayley transform never leaves the start's component, det +1 like the identity
    basis = random_orthogonal(p, seed=4)
    s = basis @ torch.diag(torch.linspace(1.0, 2.0, p, dtype=torch.float64)) @ basis.T
    return q @ s, q


@pytest.mark.parametrize(("n", "p"), [(6, 6), (8, 3)])
def test_cayley_sgd_solves_procrustes_and_every_iterate_stays_on_the_manifold(n: int, p: int) -> None:
    target, nearest = _procrustes_target(n, p)
    x = torch.eye(n, p, dtype=torch.float64, requires_grad=True)
    optimizer = CayleySGD([x], lr=0.1, momentum=0.9)
    worst = 0.0
    for _ in range(300):
        loss = 0.5 * (x - target).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        worst = max(worst, _orthogonality_error(x.detach()))
    assert worst < 1e-13  # orthogonal to float64 round-off at every step, not only at the end
    assert (x.detach() - nearest).abs().max() < 1e-6


def test_a_small_step_follows_the_papers_tangent_direction() -> None:
    """For a small step from zero momentum, X moves by lr * W X with W X = -(G - X G^T X) / 2 (square X)."""
    x0 = random_orthogonal(5, seed=1)
    gradient = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = x0.clone().requires_grad_(True)
    x.grad = gradient.clone()
    lr = 1e-6
    CayleySGD([x], lr=lr, momentum=0.9).step()
    expected = -(gradient - x0 @ gradient.T @ x0) / 2
    assert torch.allclose((x.detach() - x0) / lr, expected, rtol=1e-4, atol=1e-8)


def test_the_step_size_is_bounded_however_large_the_learning_rate() -> None:
    """alpha <= 2q / ||W|| (q = 1/2) keeps the Cayley matrix within Frobenius distance 1 of the identity."""
    x0 = random_orthogonal(16, seed=5)
    x = x0.clone().requires_grad_(True)
    x.grad = 1e3 * torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    CayleySGD([x], lr=1e6).step()
    moved = torch.linalg.matrix_norm(x.detach() - x0).item()
    assert 0.5 < moved <= 1.0 + 1e-12
    assert _orthogonality_error(x.detach()) < 1e-13


def test_bad_optimiser_settings_are_refused() -> None:
    x = torch.eye(3, requires_grad=True)
    with pytest.raises(ValueError, match="learning rate"):
        CayleySGD([x], lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        CayleySGD([x], lr=1.0, momentum=1.0)


def _fitted_tiny_model() -> tuple[torch.nn.Module, torch.Tensor]:
    """A tiny model fitted for a few Adam steps to 16 short windows, and those windows: at random init the
    model predicts nearly uniformly, so quantization barely changes its loss and there is nothing to learn."""
    model = tiny_model(vocab=64).train()
    windows = torch.randint(0, 64, (16, 17), generator=torch.Generator().manual_seed(5))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(30):
        logits = model(windows[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), windows


def test_learned_rotations_lower_the_calibration_loss_and_stay_orthogonal() -> None:
    """2-bit weights hurt the fitted tiny model enough that four full-batch Cayley steps visibly help."""
    model, calibration = _fitted_tiny_model()
    folded = fold_norms(model)
    start = build_rotations(folded, Recipe(rotation="learned", seed=2))
    spec = QuantSpec.parse("W2A4KV4")
    learned = learn_rotations(folded, start, spec, calibration, steps=4, lr=0.3, seed=0, batch_size=16)
    before, after = learned.calibration_loss
    assert after < before - 0.01
    assert len(learned.losses) == 4 and learned.seconds > 0
    check_orthogonal(learned.rotations.r1, tolerance=1e-6)  # float32 round-off of the start, no drift
    for i, r2 in learned.rotations.r2.items():
        check_orthogonal(r2, tolerance=1e-6)
        assert r2.dtype == start.r2[i].dtype and r2.shape == start.r2[i].shape
    assert (learned.rotations.r1 - start.r1).abs().max() > 1e-4
    assert learned.rotations.r3 is start.r3 and learned.rotations.r4 == start.r4  # online rotations stay fixed


def test_with_gptq_the_rotation_learns_with_floating_point_weights() -> None:
    """GPTQ replaces the weights afterwards, so the loss the rotation starts from is that of W16A4KV4."""
    model = tiny_model()
    calibration = torch.randint(0, 256, (8, 17), generator=torch.Generator().manual_seed(6))
    recipe = Recipe(spec=QuantSpec.parse("W4A4KV4"), rotation="learned", seed=1, gptq=True, cayley_steps=1)
    _, outcome = quantize(model, recipe, calibration)
    start = Recipe(spec=QuantSpec.parse("W16A4KV4"), rotation="random_hadamard", seed=1)  # where "learned" starts
    activations_only, _ = quantize(model, start)
    logits = activations_only(calibration[:, :-1])
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), calibration[:, 1:].flatten()).item()
    assert outcome.calibration_loss[0] == pytest.approx(expected, rel=1e-6)
