"""Neural mutual-information estimators (MINE, Belghazi et al. 2018; Deep InfoMax, Hjelm et
al. 2019; InfoNCE, van den Oord et al. 2018), used by MI2GAN.

For a critic ``T``, the Donsker-Varadhan (DV) representation gives

    I(X; Z) >= E_joint[T(x, z)] - log E_marginal[exp T(x, z')],

and the f-divergence (NWJ) representation the looser ``E_joint[T] - E_marginal[exp(T - 1)]``.
Both are tight at the optimal critic (``log p(x, z) / (p(x) p(z))``, plus 1 for the
f-divergence form). Deep InfoMax's Jensen-Shannon estimator
``E_joint[-softplus(-T)] - E_marginal[softplus(T)]`` is not a bound on I but rises with it; it
is bounded above by 0 (at the optimal critic it equals ``2 JSD(joint || marginal) - 2 log 2``)
and its gradients do not depend on the number of negatives. InfoNCE with ``k`` negatives per
joint pair is a lower bound on I that saturates at ``log(k + 1)``. Joint pairs are aligned
samples ``(x_i, z_i)``; marginal pairs combine ``x_i`` with the ``z`` of other samples (the
batch's ``z`` rolled, a queue of earlier samples) or an independently drawn sample.
MONAI has no such estimator, hence this module.
"""

from __future__ import annotations

import math

import torch
from monai.utils.enums import StrEnum
from torch import nn

__all__ = [
    "MIBound",
    "dv_lower_bound",
    "f_divergence_lower_bound",
    "jsd_estimate",
    "infonce_lower_bound",
    "MutualInformationEstimator",
]


class MIBound(StrEnum):
    """The lower bounds :class:`MutualInformationEstimator` offers."""

    DV = "dv"
    F_DIVERGENCE = "f_divergence"
    JSD = "jsd"
    INFONCE = "infonce"


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


def jsd_estimate(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Deep InfoMax's Jensen-Shannon estimator ``mean(-softplus(-t_joint)) - mean(softplus(t_marginal))``.

    Bounded above by 0; at the optimal critic ``log p(x, z) / (p(x) p(z))`` it equals
    ``2 JSD(joint || marginal) - 2 log 2``, which increases with the mutual information.

    Args:
        t_joint: critic scores of joint pairs, any shape.
        t_marginal: critic scores of marginal pairs, any shape.

    Returns:
        The scalar estimate, to be maximised.

    Raises:
        ValueError: an empty score tensor.
    """
    t_joint, t_marginal = _scores(t_joint, "t_joint"), _scores(t_marginal, "t_marginal")
    return -nn.functional.softplus(-t_joint).mean() - nn.functional.softplus(t_marginal).mean()


def infonce_lower_bound(t_joint: torch.Tensor, t_negatives: torch.Tensor) -> torch.Tensor:
    """InfoNCE ``mean_i[t_joint_i - log((exp t_joint_i + sum_k exp t_neg_ki) / (k + 1))]``.

    A lower bound on the mutual information that cannot exceed ``log(k + 1)``.

    Args:
        t_joint: critic scores of the ``n`` joint pairs, shape ``(n,)``.
        t_negatives: scores of ``k`` negatives of each joint pair, shape ``(k, n)``: row ``k``,
            column ``i`` pairs ``x_i`` with the ``k``-th negative ``z`` of sample ``i``.

    Returns:
        The scalar bound in nats, to be maximised.

    Raises:
        ValueError: an empty score tensor or mismatched shapes.
    """
    t_joint = _scores(t_joint, "t_joint")
    if t_negatives.ndim != 2 or t_negatives.shape[1] != t_joint.numel() or t_negatives.numel() == 0:
        raise ValueError(
            f"`t_negatives` must be (k, n) with n = {t_joint.numel()} joint scores, got {tuple(t_negatives.shape)}."
        )
    t_negatives = t_negatives.float() if t_negatives.dtype in (torch.float16, torch.bfloat16) else t_negatives
    logits = torch.cat([t_joint[None], t_negatives], dim=0)  # (k + 1, n)
    return (t_joint - torch.logsumexp(logits, dim=0)).mean() + math.log(logits.shape[0])


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

    Marginal pairs combine ``x_i`` with ``k`` other ``z`` (``z_marginal`` of ``k * n`` samples, in
    ``k`` blocks of ``n``; by default the batch's ``z`` rolled by a random offset, or by every
    offset ``1..n-1`` for InfoNCE). :meth:`forward` can also return the DV bound of the same
    scores, a comparable monitor whatever the estimator.

    Args:
        critic: a network from ``cat([x, z], dim=1)`` to one score (or a score map) per sample.
        bound: ``"dv"`` (default), ``"f_divergence"``, ``"jsd"`` (Deep InfoMax) or ``"infonce"``.
        moving_average_rate: MINE's moving-average rate in (0, 1), or ``None`` for the plain
            mini-batch gradient. Only with the DV bound.
        critic_bound: optional ``c > 0``: scores squashed to ``c tanh(T / c)``, so that no
            estimator can grow without limit.

    Raises:
        ValueError: an unknown bound, a rate outside (0, 1), a rate with another bound than DV,
            or a non-positive ``critic_bound``.

    Example::

        critic = FullyConnectedNet(in_channels=4, out_channels=1, hidden_channels=(64, 64))
        mine = MutualInformationEstimator(critic, moving_average_rate=0.01)
        loss = -mine(x, z)  # maximise the bound
    """

    def __init__(
        self,
        critic: nn.Module,
        bound: MIBound | str = MIBound.DV,
        moving_average_rate: float | None = None,
        critic_bound: float | None = None,
    ) -> None:
        super().__init__()
        if critic_bound is not None and not critic_bound > 0:
            raise ValueError(f"`critic_bound` must be positive or None, got {critic_bound}.")
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
        self.critic_bound = critic_bound
        # Set by the first training batch (counted, so that every saved value stays finite).
        self.register_buffer("log_moving_average", torch.tensor(0.0))
        self.register_buffer("moving_average_batches", torch.tensor(0, dtype=torch.int64))

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
        scores = _scores(scores, "critic output").reshape(x.shape[0], -1).mean(dim=1)
        if self.critic_bound is not None:
            scores = self.critic_bound * torch.tanh(scores / self.critic_bound)
        return scores

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, z_marginal: torch.Tensor | None = None, return_dv: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The estimate of ``I(X; Z)`` from one batch, to be maximised.

        Args:
            x: batch of the first variable, ``(n, c_x, ...)``.
            z: batch of the second variable aligned with ``x``, ``(n, c_z, ...)``.
            z_marginal: optional ``k * n`` samples independent of ``x`` (``k`` blocks shaped like
                ``z``; block ``j`` sample ``i`` is paired with ``x_i``); by default ``z`` rolled by
                a random offset in ``1..n-1`` (every offset for InfoNCE), so that no sample is
                paired with its own ``z``.
            return_dv: also return the DV bound of the same scores, detached (a monitor).

        Returns:
            The scalar estimate in nats, and with ``return_dv`` the DV bound.

        Raises:
            ValueError: mismatched shapes, or a batch of one without ``z_marginal``.
        """
        if z_marginal is None:
            if x.shape[0] < 2:
                raise ValueError("A batch of at least 2 is needed to form marginal pairs; or pass `z_marginal`.")
            offsets = (
                range(1, x.shape[0]) if self.bound == MIBound.INFONCE else [int(torch.randint(1, x.shape[0], (1,)))]
            )
            z_marginal = torch.cat([torch.roll(z, shifts=offset, dims=0) for offset in offsets])
        elif z_marginal.shape[1:] != z.shape[1:] or z_marginal.shape[0] % max(z.shape[0], 1) or not len(z_marginal):
            raise ValueError(
                f"`z_marginal` must be k blocks shaped like `z` {tuple(z.shape)}, got {tuple(z_marginal.shape)}."
            )
        k = z_marginal.shape[0] // z.shape[0]
        t_joint = self.pair_scores(x, z)
        t_marginal = self.pair_scores(x.repeat(k, *([1] * (x.ndim - 1))), z_marginal)
        estimate = self._estimate(t_joint, t_marginal, k)
        if return_dv:
            return estimate, dv_lower_bound(t_joint, t_marginal).detach()
        return estimate

    def _estimate(self, t_joint: torch.Tensor, t_marginal: torch.Tensor, k: int) -> torch.Tensor:
        if self.bound == MIBound.F_DIVERGENCE:
            return f_divergence_lower_bound(t_joint, t_marginal)
        if self.bound == MIBound.JSD:
            return jsd_estimate(t_joint, t_marginal)
        if self.bound == MIBound.INFONCE:
            return infonce_lower_bound(t_joint, t_marginal.reshape(k, -1))
        bound = dv_lower_bound(t_joint, t_marginal)
        if self.moving_average_rate is None or not (self.training and torch.is_grad_enabled()):
            return bound
        log_mean_exp = _log_mean_exp(t_marginal)
        self._update_moving_average(log_mean_exp.detach())
        # d/dtheta of exp(lme - log_ma) is grad(E[exp T]) / moving average: MINE's corrected gradient.
        corrected = t_joint.mean() - torch.exp(log_mean_exp - self.log_moving_average.to(log_mean_exp.dtype))
        return bound.detach() + (corrected - corrected.detach())

    def _update_moving_average(self, log_mean_exp: torch.Tensor) -> None:
        rate = self.moving_average_rate
        if self.moving_average_batches == 0:
            self.log_moving_average.copy_(log_mean_exp)
        else:
            self.log_moving_average.copy_(
                torch.logaddexp(math.log1p(-rate) + self.log_moving_average, math.log(rate) + log_mean_exp)
            )
        self.moving_average_batches += 1


def _scores(scores: torch.Tensor, name: str) -> torch.Tensor:
    """Flattened scores, promoted to float32 when in half precision (AMP)."""
    if scores.numel() == 0:
        raise ValueError(f"`{name}` is empty; expected at least one critic score.")
    scores = scores.reshape(-1)
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def _log_mean_exp(scores: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(scores, dim=0) - math.log(scores.numel())
