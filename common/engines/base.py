"""The base of every method's trainer: several networks and optimisers in one MONAI ``Trainer``.

MONAI's ``GanTrainer`` feeds its generator noise and ``AdversarialTrainer`` treats its inputs
as the real images of one domain, so the translation and adaptation methods here subclass
``monai.engines.Trainer`` directly; :class:`MultiNetworkTrainer` adds what they share and
leaves each method's ``_iteration`` to read like its paper's algorithm.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from monai.engines import Trainer
from torch import nn

__all__ = ["MultiNetworkTrainer", "loss_output"]


def loss_output(output: Mapping) -> dict[str, float]:
    """The scalar losses of an iteration's output, for ``StatsHandler``/``TensorBoardStatsHandler``.

    Args:
        output: ``engine.state.output`` of a :class:`MultiNetworkTrainer`.

    Returns:
        ``output["loss"]``.
    """
    return output["loss"]


class MultiNetworkTrainer(Trainer):
    """A MONAI ``Trainer`` over dictionaries of networks and optimisers.

    It moves the networks to the device (``channels_last`` on CUDA when asked), runs the
    forward passes under bf16 autocast on CUDA when ``amp`` is set (bf16 needs no loss scaling,
    so there is no ``GradScaler`` to keep), toggles ``requires_grad``, stops with a clear error
    when a loss is not finite (:meth:`step`, which also returns the losses as floats), and
    returns the iteration's losses as floats under ``"loss"``
    (for the stats handlers) and its images under ``"images"`` (for image grids).

    Args:
        device: where to train.
        max_epochs: epochs to run.
        train_data_loader: the training batches.
        networks: the method's networks by name.
        optimizers: the method's optimisers by name.
        epoch_length: iterations per epoch (default: the loader's length).
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: ``channels_last`` memory format on CUDA (ignored on CPU).
        train_handlers: MONAI/ignite handlers to attach.
        non_blocking: non-blocking host-to-device copies.

    Raises:
        ValueError: an empty network or optimiser dictionary.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        networks: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        epoch_length: int | None = None,
        amp: bool = False,
        channels_last: bool = False,
        train_handlers: Sequence | None = None,
        non_blocking: bool = False,
    ) -> None:
        if not networks or not optimizers:
            raise ValueError("A trainer needs at least one network and one optimiser.")
        device = torch.device(device)
        super().__init__(
            device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=epoch_length,
            non_blocking=non_blocking, handlers=train_handlers, amp=False, decollate=False,
        )
        on_cuda = device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if amp and on_cuda else None
        self.memory_format = torch.channels_last if channels_last and on_cuda else torch.contiguous_format
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.add_networks(networks, optimizers)

    def add_networks(self, networks: Mapping[str, nn.Module],
                     optimizers: Mapping[str, torch.optim.Optimizer] | None = None) -> None:
        """Adds networks (moved to the device, in the memory format) and optimisers, e.g. a
        method's extra networks on top of the trainer it extends.

        Args:
            networks: networks by name.
            optimizers: optimisers by name.
        """
        for name, network in networks.items():
            self.networks[name] = network.to(device=self.state.device, memory_format=self.memory_format)
        self.optimizers.update(optimizers or {})

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when ``amp`` is set, otherwise nothing.

        Returns:
            The context manager.
        """
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch tensor on the training device, in the networks' memory format.

        Args:
            tensor: a batch ``(B, C, H, W)`` from the loader.

        Returns:
            The tensor on the device.
        """
        tensor = torch.as_tensor(tensor).to(self.state.device, non_blocking=self.non_blocking)
        return tensor.contiguous(memory_format=self.memory_format) if tensor.ndim == 4 else tensor

    def set_requires_grad(self, names: Iterable[str], requires_grad: bool) -> None:
        """Freezes (``False``) or unfreezes networks by name, so a step updates only its own.

        Args:
            names: network names.
            requires_grad: the flag to set on every parameter.
        """
        for name in names:
            for parameter in self.networks[name].parameters():
                parameter.requires_grad_(requires_grad)

    def checkpoint_objects(self) -> dict:
        """The networks (unwrapped from DDP) and optimisers, for a resume checkpoint; the
        engine itself is added by the caller under ``trainer``.

        Returns:
            ``{name: object with state_dict()}``.
        """
        networks = {name: getattr(net, "module", net) for name, net in self.networks.items()}
        return {**networks, **{f"optimizer_{name}": opt for name, opt in self.optimizers.items()}}

    def step(self, optimizer: str, loss: torch.Tensor, losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Checks the losses, back-propagates ``loss`` and steps one optimiser.

        Args:
            optimizer: the optimiser's name.
            loss: the total to minimise.
            losses: its named terms, checked to be finite first.

        Returns:
            The named terms as Python floats (read with one device sync), for the iteration's output.

        Raises:
            FloatingPointError: a loss is NaN or infinite; the message names it.
        """
        values = dict(zip(losses, torch.stack([value.detach().float() for value in losses.values()]).tolist()))
        bad = next((name for name, value in values.items() if not math.isfinite(value)), None)
        if bad is not None:
            raise FloatingPointError(
                f"Loss {bad!r} is {values[bad]} at epoch {self.state.epoch}, iteration {self.state.iteration}; "
                "training stopped. Check the input intensities (normalised to [-1, 1]?) and the learning rates."
            )
        optimiser = self.optimizers[optimizer]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return values
