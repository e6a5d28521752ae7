"""Initialises the hash bias of LSH losses from the teacher before training (LSHFM's
median bias: every hash bit then splits the teacher's features about 50/50)."""
import math
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import all_gather, broadcast, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmkd.registry import HOOKS


def lsh_bias_samples(loss: nn.Module, kwargs: Dict[str, Any]) -> Tensor:
    """The teacher-side rows an LSH loss projects in one ``forward`` call, ``[M, D]``.

    A loss may define ``bias_samples(**forward_kwargs)`` (e.g.
    :class:`~mmkd.models.losses.DenseLSHLoss`: unfolded features of the kept
    locations); otherwise ``teacher_feat`` (``[N, D]`` / ``[B, L, D]``) is used, restricted
    to ``mask > 0`` when a mask was passed.
    """
    if hasattr(loss, 'bias_samples'):
        return loss.bias_samples(**kwargs)
    feat = kwargs.get('teacher_feat')
    if not isinstance(feat, Tensor):
        raise TypeError(
            f'LSHBiasInitHook: {type(loss).__name__} got no teacher_feat tensor (got '
            f'{type(feat).__name__}); the hook needs an LSH loss with a teacher_feat input '
            'or a bias_samples() method.')
    mask = kwargs.get('mask')
    if mask is not None:
        feat = feat[mask.detach() > 0]
    return feat.detach().reshape(-1, feat.shape[-1])


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU and current CUDA device) global RNG
    states on exit, so a data pass before training leaves the run's randomness as it
    would be without it."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def all_gather_rows(rows: Tensor) -> Tensor:
    """Concatenate ``[M_r, D]`` tensors of different lengths from every rank, in rank
    order (identity without distributed training)."""
    if get_world_size() == 1:
        return rows
    sizes = [int(n) for n in all_gather(torch.tensor([rows.shape[0]], device=rows.device))]
    padded = rows.new_zeros((max(sizes), ) + tuple(rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    return torch.cat([part[:n] for part, n in zip(all_gather(padded), sizes)])


def subsample_rows(rows: Tensor, limit: Optional[int], seed: int) -> Tensor:
    """At most ``limit`` rows of ``rows`` drawn without replacement (order kept) with a
    CPU generator seeded by ``seed``; all rows when ``limit`` is None or not exceeded."""
    if limit is None or rows.shape[0] <= limit:
        return rows
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(rows.shape[0], generator=gen)[:limit].sort().values
    return rows[index.to(rows.device)]


@HOOKS.register_module()
class LSHBiasInitHook(Hook):
    """Before training, set the hash bias of LSH losses to ``b = -median(W f_t)`` (or
    ``-mean``) over teacher features of the training set (LSHFM's bias initialisation,
    the authors' CIFAR setting; detection uses ``b = 0`` and does not need this hook).

    How: for up to ``max_batches`` batches of ``runner.train_dataloader``, the distiller
    runs its own training step without gradients
    (:meth:`~mmkd.models.BaseDistiller.collect_loss_inputs`: same data preprocessing,
    sources, levels and connectors as training) and the keyword arguments each LSH
    loss's ``forward`` receives are captured; the teacher-side rows
    (:func:`lsh_bias_samples`) of each batch are subsampled to
    ``ceil(max_samples / max_batches)`` and passed to the loss's ``fit_bias``. ``W``
    must be final first: the distiller's ``init_weights`` (teacher loaded, ``sigma`` set)
    runs before ``before_train``.

    Runs only on a fresh start (``runner.iter == 0``); a resumed run restores the bias
    from its checkpoint (it is a buffer of the loss). The pass restores the global RNG
    states afterwards; the student is in eval mode during it (BatchNorm statistics
    untouched). With an iteration-based loop and persistent dataloader workers, training
    then continues the sampler pass the hook started (``max_batches`` batches in).

    Distributed training: each rank runs ``ceil(max_batches / world_size)`` batches of its
    own shard; the rows of all ranks are all-gathered (in rank order), so every rank fits
    the bias on the same set, and rank 0's result is then broadcast so that the buffers
    are bit-identical whatever the reduction kernels do. Gathering (rather than every rank
    re-reading the same batches) keeps the pass ``world_size`` times shorter and covers
    more images.

    Args:
        loss_names (Sequence[str], optional): ``distill_losses`` keys to initialise.
            Defaults to every loss that has a ``fit_bias`` method.
        mode (str): ``'median'`` (default) or ``'mean'``.
        max_batches (int, optional): training batches to use, over all ranks; ``None``
            for one full pass of the dataloader. Defaults to 64.
        max_samples (int): rows kept per loss, over all ranks (memory: ``max_samples ×
            (D + num_hashes)`` fp32 on the model's device while fitting; 1.6 GB for
            RetinaNet's 2304-d, 4096-hash loss at the default). Defaults to 65536.
        seed (int): seed of the row subsampling. Defaults to 0.
    """

    priority = 'NORMAL'

    def __init__(self,
                 loss_names: Optional[Sequence[str]] = None,
                 mode: str = 'median',
                 max_batches: Optional[int] = 64,
                 max_samples: int = 65536,
                 seed: int = 0) -> None:
        if mode not in ('median', 'mean'):
            raise ValueError(f"LSHBiasInitHook: mode must be 'median' or 'mean', got {mode!r}.")
        if max_batches is not None and int(max_batches) <= 0:
            raise ValueError(f'LSHBiasInitHook: max_batches must be positive or None, got '
                             f'{max_batches}.')
        if int(max_samples) <= 0:
            raise ValueError(f'LSHBiasInitHook: max_samples must be positive, got '
                             f'{max_samples}.')
        self.loss_names = None if loss_names is None else list(loss_names)
        self.mode = mode
        self.max_batches = None if max_batches is None else int(max_batches)
        self.max_samples = int(max_samples)
        self.seed = int(seed)

    def _names(self, model) -> List[str]:
        losses = model.distill_losses
        if self.loss_names is None:
            names = [n for n, b in losses.items() if hasattr(b.loss, 'fit_bias')]
            if not names:
                raise ValueError('LSHBiasInitHook: the distiller has no loss with a '
                                 f'fit_bias method among {list(losses)}; remove the hook '
                                 'or add an LSH loss.')
            return names
        for name in self.loss_names:
            if name not in losses:
                raise KeyError(f'LSHBiasInitHook: no distill loss named {name!r}; the '
                               f'distiller has {list(losses)}.')
            if not hasattr(losses[name].loss, 'fit_bias'):
                raise TypeError(f'LSHBiasInitHook: distill loss {name!r} '
                                f'({type(losses[name].loss).__name__}) has no fit_bias.')
        return self.loss_names

    @torch.no_grad()
    def collect(self, model, dataloader) -> Dict[str, Tensor]:
        """Teacher-side rows ``[M, D]`` per loss name from this rank's batches (before
        gathering across ranks)."""
        names = self._names(model)
        world, rank = get_world_size(), get_rank()
        batches = None if self.max_batches is None else math.ceil(self.max_batches / world)
        per_batch = None if self.max_batches is None else \
            math.ceil(self.max_samples / self.max_batches)
        rows: Dict[str, List[Tensor]] = {name: [] for name in names}
        with preserved_rng():
            for index, data_batch in enumerate(dataloader):
                if batches is not None and index >= batches:
                    break
                captured = model.collect_loss_inputs(data_batch, names)
                for name in names:
                    loss = model.distill_losses[name].loss
                    batch_rows = torch.cat(
                        [lsh_bias_samples(loss, kwargs) for kwargs in captured[name]])
                    seed = self.seed + 1_000_003 * rank + index
                    rows[name].append(subsample_rows(batch_rows, per_batch, seed).float())
        missing = [name for name in names if not rows[name]]
        if missing:
            raise RuntimeError('LSHBiasInitHook: the training dataloader yielded no batch.')
        return {name: torch.cat(parts) for name, parts in rows.items()}

    def fit(self, model, dataloader, logger=None) -> Dict[str, Tensor]:
        """Collect, gather, fit and broadcast; returns the new bias per loss name."""
        local = self.collect(model, dataloader)
        biases = {}
        for name, rows in local.items():
            rows = all_gather_rows(rows)
            rows = subsample_rows(rows, self.max_samples, self.seed)
            loss = model.distill_losses[name].loss
            loss.fit_bias(rows, self.mode)
            broadcast(loss.projection.bias, src=0)
            biases[name] = loss.projection.bias
            if logger is not None:
                probe = rows[:8192].to(loss.projection.weight.device)
                ones = (probe @ loss.projection.weight.t() + loss.projection.bias > 0)
                imbalance = (ones.float().mean(0) - 0.5).abs().mean()
                logger.info(f'mmkd: LSH bias of distill loss {name!r} set to -{self.mode} of '
                            f'W f_t over {rows.shape[0]} teacher features '
                            f'(mean |P(bit = 1) - 0.5| = {float(imbalance):.3f}).')
        return biases

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if runner.iter > 0:
            runner.logger.info('mmkd: resumed run: the LSH hash bias comes from the '
                               'checkpoint, LSHBiasInitHook skipped.')
            return
        if not hasattr(model, 'collect_loss_inputs'):
            raise TypeError(f'LSHBiasInitHook needs a distiller model, got '
                            f'{type(model).__name__}.')
        self.fit(model, runner.train_dataloader, runner.logger)
