"""The mutual-information estimators (DV, NWJ, Deep InfoMax JSD, InfoNCE) against closed forms on correlated Gaussians."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.nets import FullyConnectedNet
from torch import nn

from common.losses import (
    MutualInformationEstimator,
    dv_lower_bound,
    f_divergence_lower_bound,
    infonce_lower_bound,
    jsd_estimate,
)


def correlated_gaussians(n: int, d: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, z


def true_mi(d: int, rho: float) -> float:
    return -d / 2 * math.log(1 - rho**2)


def optimal_critic(x: torch.Tensor, z: torch.Tensor, rho: float) -> torch.Tensor:
    """log p(x, z) / (p(x) p(z)) for unit-variance pairs with correlation rho in each dimension."""
    r2 = 1 - rho**2
    per_dim = -0.5 * math.log(r2) - (x**2 + z**2 - 2 * rho * x * z) / (2 * r2) + (x**2 + z**2) / 2
    return per_dim.sum(dim=1)


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("d", [1, 3])
def test_optimal_critic_attains_the_mutual_information(rho, d):
    n = 200_000
    x, z = correlated_gaussians(n, d, rho, seed=d)
    z_marginal = correlated_gaussians(n, d, rho, seed=100 + d)[1]  # independent of x
    t_joint, t_marginal = optimal_critic(x, z, rho), optimal_critic(x, z_marginal, rho)
    # Sampling error of the two terms (delta method for the log-mean-exp).
    exp_m = t_marginal.exp()
    stderr = math.sqrt(t_joint.var() / n + exp_m.var() / (exp_m.mean() ** 2 * n))
    assert float(dv_lower_bound(t_joint, t_marginal)) == pytest.approx(true_mi(d, rho), abs=4 * stderr)
    # The f-divergence bound's optimal critic is shifted by one.
    stderr_f = math.sqrt(t_joint.var() / n + exp_m.var() / n)
    assert float(f_divergence_lower_bound(t_joint + 1, t_marginal + 1)) == pytest.approx(
        true_mi(d, rho), abs=4 * stderr_f
    )


def trained_estimator(bound, rho, d, steps, batch, **options):
    """An estimator with a 64-64 MLP critic trained by Adam 1e-3 to maximise its estimate."""
    torch.manual_seed(0)
    mine = MutualInformationEstimator(FullyConnectedNet(2 * d, 1, (64, 64)), bound=bound, **options)
    optimiser = torch.optim.Adam(mine.parameters(), lr=1e-3)
    for step in range(steps):
        x, z = (v.float() for v in correlated_gaussians(batch, d, rho, seed=step))
        loss = -mine(x, z)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return mine


@pytest.mark.parametrize("bound,rate", [("dv", 0.01), ("dv", None), ("f_divergence", None)])
def test_trained_critic_reaches_the_true_mutual_information(bound, rate):
    rho, d = 0.8, 2
    mine = trained_estimator(bound, rho, d, steps=1000, batch=256, moving_average_rate=rate)
    x, z = (v.float() for v in correlated_gaussians(100_000, d, rho, seed=-1 % 2**31))
    z_marginal = correlated_gaussians(100_000, d, rho, seed=12345)[1].float()
    with torch.no_grad():
        estimate = float(mine.eval()(x, z, z_marginal))
    assert estimate == pytest.approx(true_mi(d, rho), rel=0.10)


def test_large_critic_values_stay_finite():
    t = torch.tensor([1e4, 2e4, 3e4], requires_grad=True)
    value = dv_lower_bound(t, t)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(t.grad).all()
    assert value.item() == pytest.approx(2e4 - (3e4 - math.log(3)), rel=1e-6)
    # bf16 scores (AMP) are promoted to float32.
    assert dv_lower_bound(t.detach().bfloat16(), t.detach().bfloat16()).dtype == torch.float32

    class Huge(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(5e3))

        def forward(self, pairs: torch.Tensor) -> torch.Tensor:
            return self.scale * pairs.sum(dim=1)

    mine = MutualInformationEstimator(Huge(), moving_average_rate=0.01)
    for seed in range(3):
        x, z = correlated_gaussians(64, 2, 0.5, seed)
        value = mine(x.float(), z.float())
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(mine.critic.scale.grad)


class Linear(nn.Module):
    """T(x, z) = w . [x, z] for scalar x and z, so that every gradient is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.7, -0.4], dtype=torch.float64))
        self.seen: list[torch.Tensor] = []

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        self.seen.append(pairs.detach().clone())
        return pairs @ self.w


def test_moving_average_gradient_correction():
    rate = 0.1
    mine = MutualInformationEstimator(Linear(), moving_average_rate=rate)
    plain = MutualInformationEstimator(Linear())
    moving_average = None
    for seed in range(3):
        x, z = correlated_gaussians(8, 1, 0.6, seed)
        z_marginal = correlated_gaussians(8, 1, 0.6, seed + 50)[1]
        for estimator in (mine, plain):
            estimator.critic.w.grad = None
        value = mine(x, z, z_marginal)
        value.backward()
        plain(x, z, z_marginal).backward()
        joint, marginal = torch.cat([x, z], 1), torch.cat([x, z_marginal], 1)
        exp_m = (marginal @ mine.critic.w).exp().detach()
        batch_mean = exp_m.mean()
        moving_average = batch_mean if moving_average is None else (1 - rate) * moving_average + rate * batch_mean
        # The value is the plain DV bound; the gradient divides by the moving average.
        torch.testing.assert_close(value, dv_lower_bound(joint @ mine.critic.w, marginal @ mine.critic.w))
        expected = joint.mean(0) - (exp_m[:, None] * marginal).mean(0) / moving_average
        # The moving average is kept in float32.
        torch.testing.assert_close(mine.critic.w.grad, expected, rtol=1e-6, atol=1e-9)
        assert float(mine.log_moving_average.exp()) == pytest.approx(float(moving_average), rel=1e-6)
        if seed == 0:  # the average starts at the first batch, where both gradients agree
            torch.testing.assert_close(mine.critic.w.grad, plain.critic.w.grad, rtol=1e-6, atol=1e-9)
        else:
            assert not torch.allclose(mine.critic.w.grad, plain.critic.w.grad)
    before = mine.log_moving_average.clone()
    with torch.no_grad():
        mine(x, z)
    mine.eval()(x, z)
    torch.testing.assert_close(mine.log_moving_average, before)  # only training batches update it


def test_joint_and_marginal_pairs():
    critic = Linear()
    mine = MutualInformationEstimator(critic)
    x = torch.arange(6, dtype=torch.float64)[:, None]
    z = 10 + torch.arange(6, dtype=torch.float64)[:, None]
    for _ in range(20):
        critic.seen.clear()
        mine(x, z)
        joint, marginal = critic.seen
        torch.testing.assert_close(joint, torch.cat([x, z], 1))
        torch.testing.assert_close(marginal[:, :1], x)
        assert sorted(marginal[:, 1].tolist()) == z[:, 0].tolist()  # a permutation of z ...
        assert (marginal[:, 1] != z[:, 0]).all()  # ... that pairs no sample with its own z
    z_marginal = -z
    critic.seen.clear()
    mine(x, z, z_marginal)
    torch.testing.assert_close(critic.seen[1], torch.cat([x, z_marginal], 1))


def test_feature_map_critic_scores_one_value_per_sample():
    critic = nn.Conv2d(5, 1, kernel_size=3, padding=1)
    mine = MutualInformationEstimator(critic)
    x, z = torch.randn(4, 3, 8, 8), torch.randn(4, 2, 8, 8)
    scores = mine.pair_scores(x, z)
    assert scores.shape == (4,)
    torch.testing.assert_close(scores, critic(torch.cat([x, z], 1)).mean(dim=(1, 2, 3)))


def test_errors():
    critic = Linear()
    with pytest.raises(
        ValueError, match="Unknown mutual-information bound 'mine'; expected one of dv, f_divergence, jsd, infonce"
    ):
        MutualInformationEstimator(critic, bound="mine")
    with pytest.raises(ValueError, match="`critic_bound` must be positive"):
        MutualInformationEstimator(critic, critic_bound=0.0)
    with pytest.raises(ValueError, match=r"`moving_average_rate` must be in \(0, 1\)"):
        MutualInformationEstimator(critic, moving_average_rate=1.5)
    with pytest.raises(ValueError, match="applies to the DV bound only"):
        MutualInformationEstimator(critic, bound="f_divergence", moving_average_rate=0.01)
    mine = MutualInformationEstimator(critic)
    x = torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`x` and `z` must be batches .* \(4, 1\) and \(3, 1\)"):
        mine(x, x[:3])
    with pytest.raises(ValueError, match="A batch of at least 2"):
        mine(x[:1], x[:1])
    with pytest.raises(ValueError, match=r"`z_marginal` must be k blocks shaped like `z` \(4, 1\), got \(6, 1\)"):
        mine(x, x, torch.zeros(6, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`t_negatives` must be \(k, n\) with n = 3"):
        infonce_lower_bound(torch.ones(3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="`t_marginal` is empty"):
        dv_lower_bound(torch.ones(3), torch.ones(0))


def gaussian_jsd(rho: float) -> float:
    """JSD between the joint of unit-variance Gaussians with correlation rho and the product of
    their marginals (d = 1), by quadrature on a fine grid."""
    grid = torch.linspace(-9, 9, 1801, dtype=torch.float64)
    x, z = torch.meshgrid(grid, grid, indexing="ij")
    step = float(grid[1] - grid[0])
    r2 = 1 - rho**2
    log_joint = -(x**2 + z**2 - 2 * rho * x * z) / (2 * r2) - math.log(2 * math.pi * math.sqrt(r2))
    log_product = -(x**2 + z**2) / 2 - math.log(2 * math.pi)
    log_mixture = torch.logaddexp(log_joint, log_product) - math.log(2)
    kl = (log_joint.exp() * (log_joint - log_mixture)).sum() + (log_product.exp() * (log_product - log_mixture)).sum()
    return float(kl) * step**2 / 2


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_jsd_estimator_at_the_optimal_critic_is_twice_the_jsd_minus_2_log_2(rho):
    n = 400_000
    x, z = correlated_gaussians(n, 1, rho, seed=7)
    z_marginal = correlated_gaussians(n, 1, rho, seed=8)[1]
    t_joint, t_marginal = optimal_critic(x, z, rho), optimal_critic(x, z_marginal, rho)
    expected = 2 * gaussian_jsd(rho) - 2 * math.log(2)
    assert float(jsd_estimate(t_joint, t_marginal)) == pytest.approx(expected, abs=3e-3)
    # It grows with the mutual information, and no critic can lift it above 0.
    assert gaussian_jsd(0.9) > gaussian_jsd(0.6) > gaussian_jsd(0.3) > 0
    huge = torch.tensor([1e4, -1e4, 50.0, 0.0])
    assert float(jsd_estimate(huge, huge)) <= 0 and float(jsd_estimate(huge, -huge)) <= 0
    assert float(jsd_estimate(torch.full((3,), 1e4), torch.full((3,), -1e4))) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("rho, k", [(0.5, 511), (0.99, 7)])
def test_infonce_at_the_optimal_critic(rho, k):
    """Close to I when I << log(k + 1); saturating at log(k + 1) when I is larger."""
    n = 4000
    x, z = correlated_gaussians(n, 3, rho, seed=3)
    negatives = torch.stack([correlated_gaussians(n, 3, rho, seed=100 + j)[1] for j in range(k)])  # (k, n, 3)
    t_joint = optimal_critic(x, z, rho)
    t_negatives = torch.stack([optimal_critic(x, negative, rho) for negative in negatives])
    value = float(infonce_lower_bound(t_joint, t_negatives))
    assert value <= math.log(k + 1) + 1e-9
    if true_mi(3, rho) < math.log(k + 1) / 4:
        assert value == pytest.approx(true_mi(3, rho), abs=0.03)
    else:
        assert value == pytest.approx(math.log(k + 1), abs=0.05)


@pytest.mark.parametrize("bound", ["jsd", "infonce"])
def test_trained_jsd_and_infonce_critics_rank_pairs(bound):
    """Trained on correlated Gaussians, the critic scores joint pairs above shuffled ones, and the
    estimator's value approaches its value at the optimal critic."""
    rho, d = 0.8, 2
    mine = trained_estimator(bound, rho, d, steps=600, batch=128)
    x, z = (v.float() for v in correlated_gaussians(20_000, d, rho, seed=99_999))
    z_marginal = correlated_gaussians(20_000, d, rho, seed=12_345)[1].float()
    with torch.no_grad():
        joint, marginal = mine.pair_scores(x, z), mine.pair_scores(x, z_marginal)
        accuracy = float(((joint > 0).float().mean() + (marginal < 0).float().mean()) / 2)
        optimum = optimal_critic(x.double(), z.double(), rho), optimal_critic(x.double(), z_marginal.double(), rho)
    if bound == "jsd":
        assert float(jsd_estimate(joint, marginal)) == pytest.approx(float(jsd_estimate(*optimum)), abs=0.03)
    else:  # scores with any offset rank the same: compare the ranking of joint over marginal pairs
        assert float((joint > marginal).float().mean()) == pytest.approx(
            float((optimum[0] > optimum[1]).double().mean()), abs=0.02
        )
    if bound == "jsd":
        assert accuracy > 0.75


def test_critic_bound_and_dv_monitor():
    critic = Linear()
    x = torch.arange(6, dtype=torch.float64)[:, None] * 100
    z = -x
    for bound in ("dv", "jsd", "infonce", "f_divergence"):
        mine = MutualInformationEstimator(critic, bound=bound, critic_bound=5.0)
        scores = mine.pair_scores(x, z)
        assert scores.abs().max() <= 5.0 and scores.abs().max() > 4.9  # squashed, not clipped to a constant
        value, dv = mine(x, z, torch.flip(z, [0]), return_dv=True)
        joint, marginal = mine.pair_scores(x, z), mine.pair_scores(x, torch.flip(z, [0]))
        torch.testing.assert_close(dv, dv_lower_bound(joint, marginal))
        assert not dv.requires_grad and value.requires_grad


def test_k_negatives_per_sample():
    """``z_marginal`` of k blocks pairs block j's sample i with x_i; InfoNCE by default uses every roll."""
    critic = Linear()
    x = torch.arange(4, dtype=torch.float64)[:, None]
    z = 10 + x
    negatives = torch.cat([20 + x, 30 + x])  # k = 2
    mine = MutualInformationEstimator(critic, bound="infonce")
    critic.seen.clear()
    value = mine(x, z, negatives)
    torch.testing.assert_close(critic.seen[1], torch.cat([torch.cat([x, x]), negatives], 1))
    t_joint = mine.pair_scores(x, z)
    t_negatives = mine.pair_scores(torch.cat([x, x]), negatives).reshape(2, 4)
    torch.testing.assert_close(value, infonce_lower_bound(t_joint, t_negatives))
    critic.seen.clear()
    mine(x, z)  # default: the 3 other samples' z for each x
    marginal = critic.seen[1]
    assert marginal.shape == (12, 2)
    for i in range(4):
        partners = sorted(marginal[marginal[:, 0] == i, 1].tolist())
        assert partners == sorted(v for v in z[:, 0].tolist() if v != 10 + i)
