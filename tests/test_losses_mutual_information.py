"""The Donsker-Varadhan estimator against the closed-form mutual information of correlated Gaussians."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.nets import FullyConnectedNet
from torch import nn

from common.losses import MutualInformationEstimator, dv_lower_bound, f_divergence_lower_bound


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


@pytest.mark.parametrize("bound,rate", [("dv", 0.01), ("dv", None), ("f_divergence", None)])
def test_trained_critic_reaches_the_true_mutual_information(bound, rate):
    rho, d = 0.8, 2
    torch.manual_seed(0)
    mine = MutualInformationEstimator(FullyConnectedNet(2 * d, 1, (64, 64)), bound=bound, moving_average_rate=rate)
    optimiser = torch.optim.Adam(mine.parameters(), lr=1e-3)
    for step in range(1000):
        x, z = (v.float() for v in correlated_gaussians(256, d, rho, seed=step))
        loss = -mine(x, z)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
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
    with pytest.raises(ValueError, match="Unknown mutual-information bound 'jsd'; expected one of dv, f_divergence"):
        MutualInformationEstimator(critic, bound="jsd")
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
    with pytest.raises(ValueError, match=r"`z_marginal` must have the shape of `z`"):
        mine(x, x, x[:2])
    with pytest.raises(ValueError, match="`t_marginal` is empty"):
        dv_lower_bound(torch.ones(3), torch.ones(0))
