"""Neural mutual-information lower bounds (MINE, Belghazi et al. 2018), used by MI2GAN.

For a critic ``T``, the Donsker-Varadhan (DV) representation gives

    I(X; Z) >= E_joint[T(x, z)] - log E_marginal[exp T(x, z')],

and the f-divergence (NWJ) representation the looser ``E_joint[T] - E_marginal[exp(T - 1)]``.
Both are tight at the optimal critic (``log p(x, z) / (p(x) p(z))``, plus 1 for the
f-divergence form). Joint pairs are aligned samples ``(x_i, z_i)``; marginal pairs combine
``x_i`` with a ``z`` of another sample: the batch's ``z`` shifted by a random non-zero offset,
or an independently drawn sample (MI2GAN pairs with a random real image of the other domain).
MONAI has no such estimator, hence this module.
"""

from __future__ import annotations

import math

import torch
from monai.utils.enums import StrEnum
from torch import nn

__all__ = ["MIBound", "dv_lower_bound", "f_divergence_lower_bound", "MutualInformationEstimator"]


class MIBound(StrEnum):
    """The lower bounds :class:`MutualInformationEstimator` offers."""

    DV = "dv"
    F_DIVERGENCE = "f_divergence"


def dv_lower_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan bound ``mean(t_joint) - (logsumexp(t_marginal) - log n)``.

    The log-mean-exp is evaluated with ``logsumexp``, so large critic values do not overflow.

    Args:
        t_joint: critic scores of joint pairs, any shape (every element is one pair).
        t_marginal: critic scores of the ``n`` marginal pairs, any shape.

    Returns:
        The scalar bound in nats (float32 at least), to be maximised.

    Raises:
        ValueError: an empty score tensor.
    """
    t_joint, t_marginal = _scores(t_joint, "t_joint"), _scores(t_marginal, "t_marginal")
    return t_joint.mean() - _log_mean_exp(t_marginal)


def f_divergence_lower_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """f-divergence (NWJ) bound ``mean(t_joint) - mean(exp(t_marginal - 1))``.

    Unbiased in mini-batches but of higher variance than the DV bound. ``exp`` overflows to
    ``inf`` (a bound of ``-inf``) once marginal scores exceed about 89 in float32.

    Args:
        t_joint: critic scores of joint pairs, any shape.
        t_marginal: critic scores of marginal pairs, any shape.

    Returns:
        The scalar bound in nats, to be maximised.

    Raises:
        ValueError: an empty score tensor.
    """
    t_joint, t_marginal = _scores(t_joint, "t_joint"), _scores(t_marginal, "t_marginal")
    return t_joint.mean() - torch.exp(t_marginal - 1).mean()


class MutualInformationEstimator(nn.Module):
    """Owns a critic and estimates the mutual information of two batches, ``x`` and ``z``.

    The critic scores ``torch.cat([x, z], dim=1)`` (vectors ``(n, d)`` or feature maps
    ``(n, c, ...)`` with equal spatial sizes); a critic output with more than one value per
    sample (a patch map) is averaged per sample into the score ``T(x, z)``.

    With ``moving_average_rate`` set (MINE uses 0.01), the DV bound's gradient is MINE's
    bias-corrected one: the denominator ``E_marginal[exp T]`` of the gradient of the
    log-mean-exp term is replaced by its exponential moving average over training batches,
    while the returned value stays the plain DV bound. The average is kept in log space and only
    updated in training mode with gradients enabled.

    Args:
        critic: a network from ``cat([x, z], dim=1)`` to one score (or a score map) per sample.
        bound: ``"dv"`` (default) or ``"f_divergence"``.
        moving_average_rate: MINE's moving-average rate in (0, 1), or ``None`` for the plain
            mini-batch gradient. Only with the DV bound.

    Raises:
        ValueError: an unknown bound, a rate outside (0, 1), or a rate with the f-divergence bound.

    Example::

        critic = FullyConnectedNet(in_channels=4, out_channels=1, hidden_channels=(64, 64))
        mine = MutualInformationEstimator(critic, moving_average_rate=0.01)
        loss = -mine(x, z)  # maximise the bound
    """

    def __init__(
        self, critic: nn.Module, bound: MIBound | str = MIBound.DV, moving_average_rate: float | None = None
    ) -> None:
        super().__init__()
        if bound not in list(MIBound):
            raise ValueError(f"Unknown mutual-information bound {bound!r}; expected one of {', '.join(MIBound)}.")
        if moving_average_rate is not None:
            if not 0 < moving_average_rate < 1:
                raise ValueError(f"`moving_average_rate` must be in (0, 1), got {moving_average_rate}.")
            if bound != MIBound.DV:
                raise ValueError("`moving_average_rate` (MINE's gradient correction) applies to the DV bound only.")
        self.critic = critic
        self.bound = MIBound(bound)
        self.moving_average_rate = moving_average_rate
        # NaN until the first training batch sets it.
        self.register_buffer("log_moving_average", torch.tensor(float("nan")))

    def pair_scores(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Critic scores of aligned pairs.

        Args:
            x: batch ``(n, c_x, ...)``.
            z: batch ``(n, c_z, ...)`` with the spatial shape of ``x``.

        Returns:
            ``T(x_i, z_i)`` for every sample, shape ``(n,)``.

        Raises:
            ValueError: ``x`` and ``z`` cannot be concatenated along the channel axis.
        """
        if x.ndim < 2 or x.ndim != z.ndim or x.shape[0] != z.shape[0] or x.shape[2:] != z.shape[2:]:
            raise ValueError(
                "`x` and `z` must be batches (n, channels, ...) with the same batch size and spatial shape, "
                f"got {tuple(x.shape)} and {tuple(z.shape)}."
            )
        scores = self.critic(torch.cat([x, z], dim=1))
        return _scores(scores, "critic output").reshape(x.shape[0], -1).mean(dim=1)

    def forward(self, x: torch.Tensor, z: torch.Tensor, z_marginal: torch.Tensor | None = None) -> torch.Tensor:
        """The lower bound on ``I(X; Z)`` from one batch, to be maximised.

        Args:
            x: batch of the first variable, ``(n, c_x, ...)``.
            z: batch of the second variable aligned with ``x``, ``(n, c_z, ...)``.
            z_marginal: optional batch independent of ``x`` (same shape as ``z``) for the
                marginal pairs; by default ``z`` shifted by a random offset in ``1..n-1``, so
                that no sample is paired with its own ``z``.

        Returns:
            The scalar bound in nats.

        Raises:
            ValueError: mismatched shapes, or a batch of one without ``z_marginal``.
        """
        if z_marginal is None:
            if x.shape[0] < 2:
                raise ValueError("A batch of at least 2 is needed to form marginal pairs; or pass `z_marginal`.")
            offset = int(torch.randint(1, x.shape[0], (1,)))
            z_marginal = torch.roll(z, shifts=offset, dims=0)
        elif z_marginal.shape != z.shape:
            raise ValueError(
                f"`z_marginal` must have the shape of `z` {tuple(z.shape)}, got {tuple(z_marginal.shape)}."
            )
        t_joint = self.pair_scores(x, z)
        t_marginal = self.pair_scores(x, z_marginal)
        if self.bound == MIBound.F_DIVERGENCE:
            return f_divergence_lower_bound(t_joint, t_marginal)
        bound = dv_lower_bound(t_joint, t_marginal)
        if self.moving_average_rate is None or not (self.training and torch.is_grad_enabled()):
            return bound
        log_mean_exp = _log_mean_exp(t_marginal)
        self._update_moving_average(log_mean_exp.detach())
        # d/dtheta of exp(lme - log_ma) is grad(E[exp T]) / moving average: MINE's corrected gradient.
        corrected = t_joint.mean() - torch.exp(log_mean_exp - self.log_moving_average.to(log_mean_exp.dtype))
        return bound.detach() + (corrected - corrected.detach())

    def _update_moving_average(self, log_mean_exp: torch.Tensor) -> None:
        if torch.isnan(self.log_moving_average):
            self.log_moving_average.copy_(log_mean_exp)
            return
        rate = self.moving_average_rate
        self.log_moving_average.copy_(
            torch.logaddexp(math.log1p(-rate) + self.log_moving_average, math.log(rate) + log_mean_exp)
        )


def _scores(scores: torch.Tensor, name: str) -> torch.Tensor:
    """Flattened scores, promoted to float32 when in half precision (AMP)."""
    if scores.numel() == 0:
        raise ValueError(f"`{name}` is empty; expected at least one critic score.")
    scores = scores.reshape(-1)
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def _log_mean_exp(scores: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(scores, dim=0) - math.log(scores.numel())
