"""Batched, sharded, reproducibly shuffled and augmented loading on ``paddle.io.DataLoader``.

Unreadable images (truncated JPEGs, other files named ``.JPEG``; ImageNet-scale folders have some)
do not stop a run: each is left out of its batch (training batches keep their size by repeating
the batch's other images), warned about once by name and counted (``ImageLoader.skipped_in_epoch``);
only when more than ``max_bad_fraction`` of a batch (one image per batch is always allowed, unless
the fraction is 0) or of an epoch is unreadable does the loader raise
:class:`UnreadableImagesError`. Any other exception while loading a sample is raised in the
main process with its own traceback, rather than killing Paddle's worker queue (which shows as
"Blocking queue is killed", or as a hang without workers). Loader workers die with the process
that started them, also when it is killed with SIGKILL (Linux).
"""
import ctypes
import logging
import os
import random
import signal
import sys
import traceback
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle

from pimm.utils.runtime import retain_freed_memory

from .cutout import Cutout
from .dataset import ImageReadError
from .random_erasing import RandomErasing
from .random_state import AugRandom, seed_augmentation
from .transforms import PixelNormalization
from .transforms_factory import ColorJitterArg, create_transform, pipeline_mean_std


_logger = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class UnreadableImagesError(ImageReadError):
    """More than the allowed share of a batch or an epoch could not be read; the message names
    files and the setting."""


def _exit_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this worker process when its parent dies (Linux). Paddle's own
    watchdog looks only between batches, so a worker blocked on a full queue outlived a killed
    parent, holding its memory."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


class ShardedBatchSampler(paddle.io.DistributedBatchSampler):
    """Batches of one rank's shard of the dataset, shuffled by (seed, epoch) when ``shuffle``.

    Every rank draws the same permutation, pads it by wrapping around to a multiple of
    ``num_replicas`` (so all ranks get the same number of samples) and takes every
    ``num_replicas``-th index from ``rank`` on. ``set_epoch`` chooses the permutation.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, num_replicas={num_replicas})")
        super().__init__(
            dataset, batch_size, num_replicas=num_replicas, rank=rank, shuffle=shuffle, drop_last=drop_last
        )
        self.seed = int(seed)

    def shard_indices(self) -> np.ndarray:
        order = np.arange(len(self.dataset))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return np.resize(order, self.total_size)[self.local_rank :: self.nranks]

    def __iter__(self) -> Iterator[List[int]]:
        indices = self.shard_indices()
        stop = len(indices) - len(indices) % self.batch_size if self.drop_last else len(indices)
        for start in range(0, stop, self.batch_size):
            yield indices[start : start + self.batch_size].tolist()


class _WorkerInit:
    """``worker_init_fn``: a distinct, reproducible random state for each (seed, rank, epoch, worker),
    and freed memory kept in the worker (``pimm.utils.retain_freed_memory``): each batch then reuses
    the pages of the one before instead of faulting in a fresh float32 batch (19 MB at 224 px),
    which the glibc default would unmap after every batch."""

    def __init__(self, seed: int, rank: int) -> None:
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.parent_pid = os.getpid()  # the process whose pass starts the workers

    def entropy(self, worker_id: int) -> List[int]:
        return [self.seed, self.rank, self.epoch, worker_id]

    def __call__(self, worker_id: int) -> None:
        _exit_with_parent(self.parent_pid)
        retain_freed_memory()
        entropy = self.entropy(worker_id)
        seed_augmentation(entropy)
        # Custom transforms that use the global generators get the same guarantee.
        state = np.random.SeedSequence(entropy + [1]).generate_state(2)
        random.seed(int(state[0]))
        np.random.seed(int(state[1]))


def fast_collate(batch: Sequence[Tuple[np.ndarray, int]]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack ``(image array, label)`` samples into an image batch and an int64 label vector."""
    images = np.stack([sample[0] for sample in batch])
    labels = np.asarray([sample[1] for sample in batch], dtype=np.int64)
    return images, labels


class _Failed:
    """What a sample whose loading raised becomes inside a loader worker (it never leaves it):
    ``unreadable`` when the image could not be decoded, and the error, as text."""

    __slots__ = ("index", "unreadable", "error")

    def __init__(self, index: int, unreadable: bool, error: str) -> None:
        self.index, self.unreadable, self.error = index, unreadable, error


class _GuardedDataset(paddle.io.Dataset):
    """``dataset`` whose samples never raise: one that fails becomes a :class:`_Failed`, for
    :class:`_LeaveOutFailed` to report to the main process."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except ImageReadError as err:
            return _Failed(index, True, str(err))
        except Exception:  # raised in the main process, with this traceback
            return _Failed(index, False, traceback.format_exc())


class _LeaveOutFailed:
    """``collate_fn`` around the loader's own: leaves failed samples out of the batch (with
    ``refill``, their places go to the batch's other samples in turn, so the batch keeps its
    size) and appends a report for the main process, ``[requested samples, [[position in the
    batch, dataset index, unreadable, error], ...]]``: plain Python values, which Paddle passes
    through without making tensors of them (no device copy, no host sync to read them)."""

    def __init__(self, collate_fn: Callable, refill: bool) -> None:
        self.collate_fn = collate_fn
        self.refill = refill

    def __call__(self, samples):
        report = [len(samples), [[pos, s.index, s.unreadable, s.error]
                                 for pos, s in enumerate(samples) if isinstance(s, _Failed)]]
        good = [s for s in samples if not isinstance(s, _Failed)]
        if not good:  # the main process raises on the report; these only keep the structure
            return np.zeros([1], np.float32), np.zeros([1], np.int64), report
        if self.refill:
            good = [good[i % len(good)] for i in range(len(samples))]
        return (*self.collate_fn(good), report)


class NormalizingCollate:
    """Collate, then turn uint8 image batches into normalised float32 and augment them (random
    erasing or Cutout, which work on normalised batches).

    The prefetcher path: workers ship small uint8 images and normalise a whole batch in one
    vectorised numpy pass (Paddle's broadcasting ops on CPU are several times slower, and would run
    on the training thread). The augmentation draws from the worker's seeded generator.
    """

    def __init__(
        self,
        collate_fn: Callable,
        mean: Sequence[float],
        std: Sequence[float],
        batch_augment: Optional[Callable] = None,
        max_pixel_value: float = 255.0,
        color_order: str = "rgb",
    ) -> None:
        self.collate_fn = collate_fn
        self.batch_augment = batch_augment
        self.normalization = PixelNormalization(mean, std, max_pixel_value, color_order)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """A uint8 ``[B, C, H, W]`` batch as normalised, C-contiguous float32. The stacked batch
        of ``ToNumpy``'s transposed views keeps their HWC memory order; converting it in C order
        here makes the per-channel arithmetic run along rows rather than in steps of three
        (7x faster at 224 px) and spares the copy into a tensor its own strided pass."""
        return self.normalization(images.astype(np.float32, order="C"), channel_axis=1)

    def __call__(self, batch):
        images, *rest = self.collate_fn(batch)
        if isinstance(images, np.ndarray) and images.dtype == np.uint8:
            images = self.normalize(images)
            if self.batch_augment is not None:
                images = self.batch_augment(images)
        return (images, *rest)


class ImageLoader:
    """Iterable over ``(images, labels)``: float32 ``[B, 3, H, W]`` normalised, int64 ``[B]``.

    Each pass (``__iter__``) uses the current epoch -- for the shuffle order and to seed the
    augmentation of every worker -- and then advances it; ``set_epoch(e)`` makes the next pass use
    epoch ``e`` (call it every epoch, and after resuming).

    Unreadable images (see the module doc): ``skipped_in_epoch`` counts those of the current pass;
    ``batch_skipped`` lists the positions left out of the batch just yielded (always empty with
    ``refill``, which fills them with the batch's other images). More than ``max_bad_fraction``
    of a batch or of the pass raises :class:`UnreadableImagesError`, whose message names
    ``bad_images_setting`` as the way to allow more.
    """

    def __init__(
        self,
        dataset,
        batch_sampler: ShardedBatchSampler,
        num_workers: int,
        collate_fn: Callable,
        seed: int,
        rank: int,
        pin_memory: bool,
        use_shared_memory: bool,
        refill: bool = False,
        max_bad_fraction: float = 0.1,
        bad_images_setting: str = "max_bad_fraction",
        rng: Optional[AugRandom] = None,
    ) -> None:
        self.dataset = dataset
        self.rng = rng
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.seed = seed
        self.epoch = 0
        self.max_bad_fraction = float(max_bad_fraction)
        self.bad_images_setting = bad_images_setting
        self.skipped_in_epoch = 0
        self.batch_skipped: List[int] = []
        self._warned = set()
        self._worker_init = _WorkerInit(seed, rank)
        self.loader = paddle.io.DataLoader(
            _GuardedDataset(dataset),
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=_LeaveOutFailed(collate_fn, refill),
            worker_init_fn=self._worker_init if num_workers > 0 else None,
            use_shared_memory=use_shared_memory,
        )
        # Paddle pins host memory by default on GPU; follow the caller's choice instead.
        self.loader.pin_memory = pin_memory

    @property
    def batch_size(self) -> int:
        return self.batch_sampler.batch_size

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Tuple[paddle.Tensor, paddle.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        self.batch_sampler.set_epoch(epoch)
        self._worker_init.epoch = epoch
        self._worker_init.parent_pid = os.getpid()
        self.skipped_in_epoch = 0
        if self.num_workers == 0:
            # Batches are decoded in this process (on Paddle's reader thread): seed it like worker 0,
            # and this loader's own generator, which its transforms draw from
            seed_augmentation(self._worker_init.entropy(0))
            if self.rng is not None:
                self.rng.seed(self._worker_init.entropy(0))
        for *batch, (requested, failed) in self.loader:
            self.batch_skipped = [position for position, *_ in failed]
            if failed:
                self._account_for(failed, requested)
            yield tuple(batch)

    def _sample_name(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)
        return str(samples[index][0]) if samples is not None else f"sample {index}"

    def _account_for(self, failed: List[list], requested: int) -> None:
        """Warn about, count and judge the samples of a batch that could not be loaded."""
        for _, index, unreadable, error in failed:
            if not unreadable:  # not a damaged image: a bug, shown as it happened in the worker
                raise RuntimeError(f"loading {self._sample_name(index)} failed:\n{error}")
        self.skipped_in_epoch += len(failed)
        for _, index, _, error in failed:
            if index not in self._warned:
                self._warned.add(index)
                _logger.warning("skipping an unreadable image (left out of its batch, counted "
                                "as skipped): %s", error)
        names = ", ".join(self._sample_name(index) for _, index, _, _ in failed[:3])
        limit = f"more than {self.bad_images_setting} = {self.max_bad_fraction:g} allows"
        hint = (f"fix or delete them (or raise {self.bad_images_setting}); the warnings above "
                "name each file")
        # a batch may always lose one image (small batches still skip a single bad file, which
        # the epoch's share then bounds), unless the limit is 0
        allowed = max(self.max_bad_fraction * requested, 1.0 if self.max_bad_fraction > 0 else 0.0)
        if len(failed) == requested or len(failed) > allowed:
            raise UnreadableImagesError(
                f"{len(failed)} of the {requested} images of a batch could not be read ({names}"
                f"{', ...' if len(failed) > 3 else ''}), {limit}: {hint}")
        epoch_samples = self.batch_sampler.num_samples
        if self.skipped_in_epoch > self.max_bad_fraction * epoch_samples:
            raise UnreadableImagesError(
                f"{self.skipped_in_epoch} of the {epoch_samples} images of an epoch could not be "
                f"read (the latest: {names}), {limit}: {hint}")


def create_loader(
    dataset,
    input_size: Union[int, Sequence[int]],
    batch_size: int,
    is_training: bool = False,
    use_prefetcher: bool = True,
    re_prob: float = 0.0,
    re_mode: str = "const",
    re_count: int = 1,
    color_jitter: ColorJitterArg = 0.4,
    auto_augment: Optional[str] = None,
    interpolation: str = "bilinear",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    num_workers: int = 1,
    distributed: bool = False,
    crop_pct: Optional[float] = None,
    collate_fn: Optional[Callable] = None,
    pin_memory: bool = False,
    seed: Optional[int] = None,
    num_replicas: Optional[int] = None,
    rank: Optional[int] = None,
    use_shared_memory: bool = True,
    scale: Tuple[float, float] = (0.08, 1.0),
    max_pixel_value: float = 255.0,
    color_order: str = "rgb",
    pipeline: str = "imagenet",
    cutout_length: int = 0,
    max_bad_fraction: float = 0.1,
    bad_images_setting: str = "max_bad_fraction",
) -> ImageLoader:
    """Loader over ``dataset`` (an :class:`~pimm.data.ImageDataset` or :class:`~pimm.data.CIFAR10`)
    with timm 0.1.20's pipeline, or the CIFAR one with ``pipeline='cifar'`` (random crop with
    padding, flip, Cutout of ``cutout_length``; see :func:`create_transform`).

    Sets ``dataset.transform`` to :func:`create_transform` of the same arguments (as timm does).
    Training shuffles and drops the last incomplete batch; evaluation keeps order and every sample.
    ``distributed``: each rank reads its shard (``num_replicas``/``rank`` default to
    ``paddle.distributed``'s world size and rank); shards are padded to equal length by repeating
    samples from the start of the order, so distributed evaluation sees up to ``num_replicas - 1``
    duplicates, as in timm. ``seed`` fixes the sample order and all augmentation (workers, epochs and
    ranks get distinct streams); ``None`` means 0 when distributed (ranks must agree on the order)
    and otherwise a draw from numpy's global generator. ``pin_memory`` sets Paddle's pinned host
    memory for GPU copies. ``num_workers=0`` loads in this process and gives the same batches as
    ``num_workers=1``. ``use_prefetcher`` (timm's default) makes the per-image pipeline stop at
    uint8 and normalises and erases whole batches after collation, in the workers; a custom
    ``collate_fn`` then receives uint8 ``[3, H, W]`` arrays and should return ``(images, labels,
    ...)`` with images stacked as uint8 (normalised afterwards) or already float32 (left alone).
    ``scale``: the range of image area the training random-resized crop keeps (timm's ``--scale``).
    ``max_pixel_value`` and ``color_order``: see :class:`~pimm.data.transforms.PixelNormalization`
    (mean 0, std 1, ``max_pixel_value=1``, ``'bgr'``: raw BGR pixel values, as official SPOS).
    ``mean``/``std`` default to the pipeline's dataset statistics (ImageNet's or CIFAR-10's).
    Unreadable images are skipped up to ``max_bad_fraction`` of a batch or an epoch (see the module
    doc; ``bad_images_setting`` is the name the error gives that limit, e.g. a config key);
    training batches keep their size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if distributed:
        num_replicas = paddle.distributed.get_world_size() if num_replicas is None else num_replicas
        rank = paddle.distributed.get_rank() if rank is None else rank
    else:
        num_replicas, rank = 1, 0
    if seed is None:
        seed = 0 if distributed else int(np.random.randint(0, 2**31 - 1))
    mean, std = pipeline_mean_std(pipeline, mean, std)
    # In-process decoding (no workers) happens on Paddle's reader thread, concurrently with other
    # loaders of the process: a generator of this loader's own keeps their draws apart (worker
    # processes draw from their process-wide generator, which worker_init_fn seeds)
    rng = AugRandom() if num_workers == 0 else None
    dataset.transform = create_transform(
        input_size,
        is_training=is_training,
        use_prefetcher=use_prefetcher,
        color_jitter=color_jitter,
        auto_augment=auto_augment,
        interpolation=interpolation,
        mean=mean,
        std=std,
        re_prob=re_prob,
        re_mode=re_mode,
        re_count=re_count,
        crop_pct=crop_pct,
        scale=tuple(scale),
        max_pixel_value=max_pixel_value,
        color_order=color_order,
        pipeline=pipeline,
        cutout_length=cutout_length,
        rng=rng,
    )
    batch_sampler = ShardedBatchSampler(
        dataset,
        batch_size,
        num_replicas=num_replicas,
        rank=rank,
        shuffle=is_training,
        drop_last=is_training,
        seed=seed,
    )
    collate_fn = collate_fn or fast_collate
    if use_prefetcher:
        batch_augment = None
        if is_training and re_prob > 0:
            batch_augment = RandomErasing(re_prob, mode=re_mode, max_count=re_count, rng=rng)
        elif is_training and cutout_length > 0:  # create_transform allows it with the cifar pipeline only
            batch_augment = Cutout(cutout_length, rng=rng)
        collate_fn = NormalizingCollate(collate_fn, mean, std, batch_augment, max_pixel_value,
                                        color_order)
    return ImageLoader(
        dataset,
        batch_sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        seed=seed,
        rank=rank,
        pin_memory=pin_memory,
        use_shared_memory=use_shared_memory,
        refill=is_training,
        max_bad_fraction=max_bad_fraction,
        bad_images_setting=bad_images_setting,
        rng=rng,
    )
