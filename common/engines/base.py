"""The base of every method's trainer: several networks and optimisers in one MONAI ``Trainer``,
declared once by the method.

MONAI's ``GanTrainer`` feeds its generator noise and ``AdversarialTrainer`` treats its inputs
as the real images of one domain, so the translation and adaptation methods here subclass
``monai.engines.Trainer`` directly. A method declares, as class attributes, what it trains
(like the CycleGAN reference code's ``model_names`` / ``loss_names`` / ``visual_names``):

- ``NETWORKS``: every network it can use, by name; ``OPTIONAL_NETWORKS`` may be left out;
- ``VARIANTS``: for a method with a switch (RegGAN's ``mode``, MI2GAN's ``method``), the
  networks each value of the switch uses; :meth:`MultiNetworkTrainer.networks_for` is the one
  place where a switch is resolved (configs call it to disable what a variant does not use);
- ``OPTIMIZERS``: each optimiser and the networks it steps;
- ``LOSS_NAMES`` and ``VISUAL_NAMES`` (the image-grid rows);
- ``STATE``: further objects with a ``state_dict`` to resume (image pools), by attribute.

:class:`MultiNetworkTrainer` checks the config's ``networks`` and ``optimizers`` against the
declaration and derives from it the resume checkpoint, the image grids, the DDP unwrapping and
``.train()`` mode at every iteration, and leaves each method's ``_iteration`` to read like its
paper's algorithm.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.engines import Trainer
from torch import nn

from common.config import as_bool

__all__ = ["MultiNetworkTrainer", "loss_output", "unwrap", "distributed", "is_main_process", "check_choice"]


def loss_output(output: Mapping) -> dict[str, float]:
    """The scalar losses of an iteration's output, for ``StatsHandler``/``TensorBoardStatsHandler``.

    Args:
        output: ``engine.state.output`` of a :class:`MultiNetworkTrainer`.

    Returns:
        ``output["loss"]``.
    """
    return output["loss"]


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """A config switch (e.g. a bundle's ``method``), checked.

    Args:
        value: the value.
        choices: the allowed values.
        what: its name in the error, e.g. ``"SynthMix bundle method"``.

    Returns:
        ``value``.

    Raises:
        ValueError: another value, naming the expected ones.
    """
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {', '.join(choices)}.")
    return value


def unwrap(network: nn.Module) -> nn.Module:
    """The bare network inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper.

    Args:
        network: a network, wrapped or not.

    Returns:
        ``network.module`` for a wrapper, else ``network``.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return network.module if isinstance(network, wrappers) else network


def is_main_process() -> bool:
    """Whether this process logs and writes files: rank 0, or a run without torch.distributed.

    Returns:
        ``True`` on the main process.
    """
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def distributed(networks: Mapping[str, nn.Module | None], device: torch.device) -> dict[str, nn.Module | None]:
    """Wraps each network once in ``DistributedDataParallel`` (for ``multi_gpu_train.yaml``);
    ``None`` (a network the variant does not use) stays ``None``. Checkpoints and release
    weights unwrap them again (:func:`unwrap`).

    Args:
        networks: networks by name, on any device.
        device: this rank's device.

    Returns:
        The wrapped networks.
    """
    device_ids = [device] if device.type == "cuda" else None
    return {
        name: (
            None
            if net is None
            else nn.parallel.DistributedDataParallel(net.to(device), device_ids=device_ids, find_unused_parameters=True)
        )
        for name, net in networks.items()
    }


class MultiNetworkTrainer(Trainer):
    """A MONAI ``Trainer`` over the dictionaries of networks and optimisers its class declares.

    It moves the networks to the device (``channels_last`` on CUDA when asked), runs the
    forward passes under bf16 autocast on CUDA when ``amp`` is set (bf16 needs no loss scaling,
    so there is no ``GradScaler`` to keep), puts every network in ``train()`` mode at each
    iteration (a validation run in between may have set ``eval()``), toggles ``requires_grad``,
    steps an optional per-epoch learning-rate schedule of every optimiser, stops with a clear
    error when a loss is not finite (:meth:`step`, which also returns the losses as floats), and
    returns the iteration's losses as floats under ``"loss"`` (for the stats handlers) and its
    images under ``"images"`` (for image grids).

    Args:
        device: where to train.
        max_epochs: epochs to run.
        train_data_loader: the training batches.
        networks: the method's networks by declared name (``train#networks``); ``None`` values
            (a config item disabled for this variant) are left out.
        optimizers: the method's optimisers by declared name (``train#optimizers``); ``None``
            values are left out.
        variant: the value of the method's switch, for classes that declare ``VARIANTS``.
        lr_schedule: ``optimizer -> scheduler`` applied to every optimiser, stepped after each
            epoch and saved in the resume checkpoint (``None``: constant rates).
        epoch_length: iterations per epoch (default: the loader's length).
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: ``channels_last`` memory format on CUDA (ignored on CPU).
        train_handlers: MONAI/ignite handlers to attach.
        non_blocking: non-blocking host-to-device copies.

    Raises:
        ValueError: a missing, unknown or unused network or optimiser (naming it and listing the
            expected ones), an optimiser that does not hold exactly its networks' parameters, or
            an unknown variant.
    """

    NETWORKS: ClassVar[tuple[str, ...]] = ()
    OPTIONAL_NETWORKS: ClassVar[tuple[str, ...]] = ()
    VARIANTS: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    OPTIMIZERS: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    LOSS_NAMES: ClassVar[tuple[str, ...]] = ()
    VISUAL_NAMES: ClassVar[tuple[tuple[str, ...], ...]] = ()
    STATE: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        networks: Mapping[str, nn.Module | None],
        optimizers: Mapping[str, torch.optim.Optimizer | None],
        variant: str | None = None,
        lr_schedule: Callable[[torch.optim.Optimizer], Any] | None = None,
        epoch_length: int | None = None,
        amp: bool = False,
        channels_last: bool = False,
        train_handlers: Sequence | None = None,
        non_blocking: bool = False,
    ) -> None:
        self.variant = variant
        networks = {k: v for k, v in networks.items() if v is not None}
        optimizers = {k: v for k, v in optimizers.items() if v is not None}
        self._check(networks, optimizers)
        device = torch.device(device)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=False,
            decollate=False,
        )
        on_cuda = device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if as_bool(amp, "amp") and on_cuda else None
        self.memory_format = (
            torch.channels_last if as_bool(channels_last, "channels_last") and on_cuda else torch.contiguous_format
        )
        self.networks = {
            name: net.to(device=device, memory_format=self.memory_format) for name, net in networks.items()
        }
        self.optimizers = dict(optimizers)
        self.lr_schedulers = {name: lr_schedule(opt) for name, opt in optimizers.items()} if lr_schedule else {}
        self.add_event_handler(Events.ITERATION_STARTED, self._train_mode)
        if self.lr_schedulers:
            self.add_event_handler(Events.EPOCH_COMPLETED, self._step_schedules)

    # --- the declaration ---------------------------------------------------------------------
    @classmethod
    def networks_for(cls, variant: str | None = None) -> tuple[str, ...]:
        """The networks a variant of the method uses: the method's switch resolved in one place.

        Args:
            variant: the switch's value (``None`` for a method without ``VARIANTS``).

        Returns:
            Declared network names.

        Raises:
            ValueError: an unknown variant, or a variant given to a method without variants.
        """
        if not cls.VARIANTS:
            if variant is not None:
                raise ValueError(f"{cls.__name__} has no variants; got {variant!r}.")
            return cls.NETWORKS
        if variant not in cls.VARIANTS:
            raise ValueError(f"Unknown {cls.__name__} variant {variant!r}; expected one of {', '.join(cls.VARIANTS)}.")
        return cls.VARIANTS[variant]

    def _check(self, networks: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Validates the config's dictionaries against the declaration (see the class docstring)."""
        name = type(self).__name__ + (f" ({self.variant})" if self.variant is not None else "")
        expected = self.networks_for(self.variant)
        if not expected:
            raise ValueError(f"{name} trains no network: nothing to run.")
        required = [n for n in expected if n not in self.OPTIONAL_NETWORKS]
        _check_names(name, "network", networks, required, expected)
        wanted = [o for o, nets in self.OPTIMIZERS.items() if any(n in networks for n in nets)]
        _check_names(name, "optimizer", optimizers, wanted, wanted)
        for opt_name, optimizer in optimizers.items():
            owners = [n for n in self.OPTIMIZERS[opt_name] if n in networks]
            own = {id(p) for n in owners for p in networks[n].parameters()}
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if own != held:
                raise ValueError(
                    f"{name}: optimizer {opt_name!r} must hold exactly the parameters of {', '.join(owners)}; it "
                    f"{'misses some of them' if own - held else 'holds parameters of other networks'}."
                )

    def grid_rows(self) -> list[list[str]]:
        """The image-grid rows (``VISUAL_NAMES``), for :class:`~common.handlers.ImageGridHandler`.

        Returns:
            One list of image names per row.
        """
        return [list(row) for row in self.VISUAL_NAMES]

    def checkpoint_objects(self) -> dict:
        """Everything a resume checkpoint needs: the bare networks (unwrapped from DDP), the
        optimisers, their schedules, the declared ``STATE`` objects and the engine itself.

        Returns:
            ``{name: object with state_dict()}``.
        """
        return {
            **{name: unwrap(net) for name, net in self.networks.items()},
            **{f"optimizer_{name}": opt for name, opt in self.optimizers.items()},
            **{f"lr_scheduler_{name}": s for name, s in self.lr_schedulers.items()},
            **{
                key: getattr(self, attribute)
                for key, attribute in self.STATE.items()
                if getattr(self, attribute, None) is not None
            },
            "trainer": self,
        }

    def _train_mode(self, engine: Trainer) -> None:
        for network in self.networks.values():
            network.train()

    def _step_schedules(self, engine: Trainer) -> None:
        for scheduler in self.lr_schedulers.values():
            scheduler.step()

    # --- helpers for _iteration ----------------------------------------------------------------
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
            The tensor on the device, a plain ``torch.Tensor`` (a MONAI ``MetaTensor``'s metadata
            would be carried through, and cost time in, every operation of the iteration).
        """
        tensor = torch.as_tensor(tensor)
        tensor = tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor
        tensor = tensor.to(self.state.device, non_blocking=self.non_blocking)
        return tensor.contiguous(memory_format=self.memory_format) if tensor.ndim == 4 else tensor

    def set_requires_grad(self, names: Iterable[str], requires_grad: bool) -> None:
        """Freezes (``False``) or unfreezes networks by name, so a step updates only its own.

        Args:
            names: network names (those this variant does not use are skipped).
            requires_grad: the flag to set on every parameter.
        """
        for name in names:
            if name in self.networks:
                for parameter in self.networks[name].parameters():
                    parameter.requires_grad_(requires_grad)

    def step(self, optimizer: str, loss: torch.Tensor, losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Checks the losses, back-propagates ``loss`` and steps one optimiser.

        Args:
            optimizer: the optimiser's name.
            loss: the total to minimise.
            losses: its named terms (declared in ``LOSS_NAMES``), checked to be finite first.

        Returns:
            The named terms as Python floats (read with one device sync), for the iteration's output.

        Raises:
            FloatingPointError: a loss is NaN or infinite; the message names it.
            KeyError: a loss name the class does not declare.
        """
        undeclared = [n for n in losses if n not in self.LOSS_NAMES]
        if undeclared:
            raise KeyError(
                f"{type(self).__name__} does not declare the loss(es) {', '.join(undeclared)} in LOSS_NAMES."
            )
        values = dict(
            zip(losses, torch.stack([value.detach().float() for value in losses.values()]).tolist(), strict=True)
        )
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


def _check_names(
    owner: str, kind: str, given: Collection[str], required: Sequence[str], allowed: Sequence[str]
) -> None:
    """Raises a ValueError naming the first missing or unknown ``kind`` and listing the expected ones."""
    missing = [n for n in required if n not in given]
    unknown = [n for n in given if n not in allowed]
    if missing or unknown:
        problem = f"missing {kind} {missing[0]!r}" if missing else f"unknown or unused {kind} {unknown[0]!r}"
        raise ValueError(f"{owner}: {problem} in `{kind}s`; expected {', '.join(allowed) or 'none'}.")
