"""Datasets shared by the bundles: unpaired two-domain sampling, (mis)aligned pairs, 2D
slices of 3D volumes, the reassembly of per-slice predictions into volumes, and images rendered
once by a trained network (a segmenter trained on translations or content-only images).

They wrap any sequence of dictionaries, typically a MONAI ``CacheDataset`` that has loaded
and normalised the images once, and add only the sampling; random choices use MONAI's
``Randomizable`` state, which ``set_determinism`` and MONAI's ``DataLoader`` seed per worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import Randomizable

from common.data.datalist import DatalistError, entries
from common.data.io import domain_transform, paired_transform
from common.data.phantoms import misalign

__all__ = [
    "UnpairedDataset",
    "PairedDataset",
    "SliceDataset",
    "VolumeAssembler",
    "RenderedDataset",
    "image_dataset",
    "oracle_dataset",
    "paired_dataset",
]

logger = logging.getLogger(__name__)


class UnpairedDataset(Randomizable, torch.utils.data.Dataset):
    """Every source sample with a random target sample: an epoch visits each source sample once.

    Items are ``{"source_<key>": ..., "target_<key>": ...}`` for the keys of the two items.
    Target items come from the target's training split, which has no labels.

    Args:
        source: the source domain's samples (dictionaries).
        target: the target domain's samples.
        seed: seed of the target draws.

    Raises:
        ValueError: an empty domain.
    """

    def __init__(self, source: Sequence[dict], target: Sequence[dict], seed: int = 0) -> None:
        for name, data in (("source", source), ("target", target)):
            if len(data) == 0:
                raise ValueError(f"The {name} domain has no samples.")
        self.source, self.target = source, target
        self.set_random_state(seed)

    def randomize(self, data: None = None) -> int:
        """Draws the index of a target sample."""
        return int(self.R.randint(len(self.target)))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        source, target = self.source[index], self.target[self.randomize()]
        return {**{f"source_{k}": v for k, v in source.items()}, **{f"target_{k}": v for k, v in target.items()}}


class PairedDataset(Randomizable, torch.utils.data.Dataset):
    """Paired samples whose images are misaligned on the fly at RegGAN's level ``L``.

    Every access draws, independently for each of ``keys`` (by default the pair's ``image`` and
    ``target``), a rotation (up to L degrees), translation (up to 2L %) and scale (1 +/- 0.02 L)
    of the 2D image, as RegGAN's public code transforms both images of a training pair. The
    pair is then misaligned by the relative transform, and both images, like the translations
    the discriminator compares them with, come in random poses. Outside the field of view an
    image takes its own minimum (the background). Other keys stay as they are.

    Args:
        data: samples with ``(C, H, W)`` arrays or tensors under ``keys``.
        misalignment_level: 0 (pairs as given) to 5.
        seed: seed of the misalignment draws.
        keys: the images to transform, each with its own draw (``("target",)`` moves the
            target only).

    Raises:
        ValueError: a level outside 0-5, or no keys.
    """

    def __init__(
        self,
        data: Sequence[dict],
        misalignment_level: int = 0,
        seed: int = 0,
        keys: Sequence[str] = ("image", "target"),
    ) -> None:
        if misalignment_level not in range(6):
            raise ValueError(f"`misalignment_level` must be 0 to 5, got {misalignment_level}.")
        if not keys:
            raise ValueError("`keys` must name at least one image to misalign.")
        self.data, self.level, self.keys = data, misalignment_level, tuple(keys)
        self.set_random_state(seed)

    def randomize(self, data: None = None) -> np.random.Generator:
        """Draws the seed of one image's transform."""
        return np.random.default_rng(int(self.R.randint(2**31)))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.data[index])
        if self.level == 0:
            return item
        for key in self.keys:
            image = item[key]
            array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
            item[key] = torch.as_tensor(misalign(array, self.level, self.randomize(), cval=float(array.min())))
        return item


class SliceDataset(torch.utils.data.Dataset):
    """The 2D slices of 3D volumes, along the last spatial axis.

    Items are the volume's ``keys`` sliced to ``(C, H, W)``, plus ``volume_id`` (the index of
    the volume) and ``slice_index``, which :class:`VolumeAssembler` uses to put predictions back.

    Args:
        volumes: samples whose ``keys`` are ``(C, H, W, D)`` arrays or tensors.
        keys: the keys to slice (all must have the same depth).

    Raises:
        ValueError: a missing key, a key that is not 4D, or keys of different depth.
    """

    def __init__(self, volumes: Sequence[dict], keys: Sequence[str] = ("image", "label")) -> None:
        self.volumes, self.keys = volumes, tuple(keys)
        self.index: list[tuple[int, int]] = []
        for volume_id in range(len(volumes)):
            volume = volumes[volume_id]
            depths = set()
            for key in self.keys:
                if key not in volume:
                    raise ValueError(f"Volume {volume_id} has no key {key!r}.")
                if volume[key].ndim != 4:
                    raise ValueError(
                        f"Volume {volume_id}: {key!r} must be (C, H, W, D), got {tuple(volume[key].shape)}."
                    )
                depths.add(volume[key].shape[-1])
            if len(depths) != 1:
                raise ValueError(f"Volume {volume_id}: keys {self.keys} have different depths {sorted(depths)}.")
            self.index += [(volume_id, k) for k in range(depths.pop())]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        volume_id, slice_index = self.index[index]
        volume = self.volumes[volume_id]
        item = {key: volume[key][..., slice_index] for key in self.keys}
        return {**item, "volume_id": volume_id, "slice_index": slice_index}


class VolumeAssembler:
    """Collects per-slice predictions (in any order, batched or not) and stacks them into volumes.

    Example::

        assembler = VolumeAssembler()
        for batch in loader:  # a DataLoader over a SliceDataset
            assembler.add(batch["volume_id"], batch["slice_index"], model(batch["image"]))
        volume = assembler.volume(0)  # (C, H, W, D)
    """

    def __init__(self) -> None:
        self._slices: dict[int, dict[int, torch.Tensor]] = {}

    def add(
        self,
        volume_ids: torch.Tensor | Sequence[int],
        slice_indices: torch.Tensor | Sequence[int],
        predictions: torch.Tensor,
    ) -> None:
        """Stores a batch of slice predictions ``(B, C, H, W)``.

        Raises:
            ValueError: a slice given twice, or batch sizes that differ.
        """
        volume_ids, slice_indices = [int(v) for v in volume_ids], [int(s) for s in slice_indices]
        if not len(volume_ids) == len(slice_indices) == len(predictions):
            raise ValueError(
                f"`volume_ids`, `slice_indices` and `predictions` must have one entry per slice, got "
                f"{len(volume_ids)}, {len(slice_indices)} and {len(predictions)}."
            )
        for volume_id, slice_index, prediction in zip(volume_ids, slice_indices, predictions, strict=True):
            slices = self._slices.setdefault(volume_id, {})
            if slice_index in slices:
                raise ValueError(f"Slice {slice_index} of volume {volume_id} was added twice.")
            slices[slice_index] = prediction.detach()

    @property
    def volume_ids(self) -> list[int]:
        """The volumes that have at least one slice."""
        return sorted(self._slices)

    def volume(self, volume_id: int) -> torch.Tensor:
        """The volume ``(C, H, W, D)`` of one id.

        Raises:
            ValueError: an unknown volume, or missing slices.
        """
        if volume_id not in self._slices:
            raise ValueError(f"No slices were added for volume {volume_id}.")
        slices = self._slices[volume_id]
        missing = sorted(set(range(max(slices) + 1)) - set(slices))
        if missing:
            raise ValueError(f"Volume {volume_id} is missing slices {missing[:10]}.")
        return torch.stack([slices[k] for k in range(len(slices))], dim=-1)


class RenderedDataset(torch.utils.data.Dataset):
    """A dataset whose images are replaced by a frozen network's outputs, computed once, in
    batches and without gradients, at the first access (after an earlier training stage has
    trained the network, although the dataset is built with the config before it ran).

    Used for a segmenter trained on translated images (DACGAN: CycleGAN's synthetic MR) or on
    DADR's content-only images; the other keys (labels) pass through. The rendered images are
    kept in memory as float32 (256 kB per 256 x 256 slice).

    Args:
        dataset: samples with ``(C, H, W)`` images under ``key``.
        network: the image-to-image network, run in ``eval()`` mode (its mode is restored);
            ``None`` passes the images through (a method without rendering).
        key: the image key.
        device: where to run the network.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        dataset: Sequence[dict],
        network: torch.nn.Module | None,
        key: str = "image",
        device: torch.device | str = "cpu",
        batch_size: int = 32,
    ) -> None:
        self.dataset, self.network, self.key = dataset, network, key
        self.device, self.batch_size = torch.device(device), batch_size
        self._images: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def render(self) -> list[torch.Tensor]:
        """Runs the network over every image (the first access does it), on the CPU afterwards.

        Returns:
            The rendered images, in order.
        """
        if self._images is None:
            logger.info("Rendering %d images with %s (once)", len(self), type(self.network).__name__)
            training = self.network.training
            self.network.eval()
            images: list[torch.Tensor] = []
            with torch.no_grad():
                for start in range(0, len(self.dataset), self.batch_size):
                    batch = [self.dataset[i][self.key] for i in range(start, min(start + self.batch_size, len(self)))]
                    inputs = torch.stack([torch.as_tensor(b).as_subclass(torch.Tensor) for b in batch]).to(self.device)
                    images += list(self.network(inputs).float().cpu())
            self.network.train(training)
            self._images = images
        return self._images

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        if self.network is not None:
            item[self.key] = self.render()[index]
        return item


def image_dataset(
    datalist: dict,
    domain: str,
    split: str = "training",
    keys: Sequence[str] = ("image",),
    transform: Callable | None = None,
) -> Sequence[dict]:
    """One domain's images of one split, loaded, normalised to [-1, 1] and cached, as 2D samples.

    3D volumes are cut into their slices along the last axis (:class:`SliceDataset`); 2D images
    are returned as they are.

    Args:
        datalist: a loaded datalist (``common.data.datalist.load_datalist``).
        domain: ``"source"`` or ``"target"``.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        keys: the keys to load (``image``, and ``label`` for source images).
        transform: the preprocessing of each image or volume (a bundle's ``train#preprocessing``,
            where augmentation can be added; MONAI caches the result up to its first random
            transform); default :func:`~common.data.io.domain_transform` of ``keys``.

    Returns:
        A dataset of dictionaries with ``(C, H, W)`` tensors.

    Raises:
        DatalistError: the split does not exist.
    """
    transform = transform or domain_transform(datalist, domain, keys)
    volumes = CacheDataset(entries(datalist, domain, split), transform, progress=False)
    return SliceDataset(volumes, keys) if datalist["tensor_dim"] == 3 else volumes


def oracle_dataset(datalist: dict, split: str = "training", transform: Callable | None = None) -> Sequence[dict]:
    """The target domain's images of a split with their ``oracle_label`` as ``label``, for the
    oracles of a paper's tables only (a segmenter trained on labelled target data, joint-domain
    learning); unsupervised training never calls it.

    Args:
        datalist: a loaded datalist whose target entries of ``split`` have an ``oracle_label``
            (``common.data.synthetic.generate(..., oracle_labels=True)``).
        split: the split.
        transform: the preprocessing of ``image`` and ``label``; default
            :func:`~common.data.io.domain_transform` of the target.

    Returns:
        A dataset of dictionaries with ``(C, H, W)`` ``image`` and ``label`` tensors.

    Raises:
        DatalistError: the split does not exist, or an entry has no ``oracle_label``.
    """
    items = entries(datalist, "target", split)
    missing = [i for i, e in enumerate(items) if "oracle_label" not in e]
    if missing:
        raise DatalistError(
            f"`target.{split}[{missing[0]}]` has no `oracle_label`: the supervised and joint-domain oracles need "
            "labelled target training images (synthetic data: `data_oracle_labels: true`)."
        )
    transform = transform or domain_transform(datalist, "target", ("image", "label"))
    volumes = CacheDataset(
        [{"image": e["image"], "label": e["oracle_label"]} for e in items], transform, progress=False
    )
    return SliceDataset(volumes, ("image", "label")) if datalist["tensor_dim"] == 3 else volumes


def paired_dataset(
    datalist: dict,
    split: str = "training",
    keys: Sequence[str] = ("image", "target"),
    transform: Callable | None = None,
) -> Sequence[dict]:
    """The ``paired`` section's samples of one split, loaded, normalised to [-1, 1] (``image`` as
    the source domain, ``target``/``reference`` as the target domain) and cached, as 2D samples.

    3D volume pairs are cut into their slices along the last axis (:class:`SliceDataset`).

    Args:
        datalist: a loaded datalist with a ``paired`` section.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        keys: the keys to load (``image`` and ``target``; ``reference`` for evaluation).
        transform: the preprocessing of each pair (a bundle's ``train#preprocessing``); default
            :func:`~common.data.io.paired_transform` of ``keys``.

    Returns:
        A dataset of dictionaries with ``(C, H, W)`` tensors.

    Raises:
        DatalistError: the datalist has no such split.
    """
    pairs = CacheDataset(
        entries(datalist, "paired", split), transform or paired_transform(datalist, keys), progress=False
    )
    return SliceDataset(pairs, keys) if datalist["tensor_dim"] == 3 else pairs
