"""Check that every process of a distributed run holds the same tensors.

MMEngine broadcasts rank 0's ``state_dict()`` after ``init_weights()``, so the student,
the connectors and the loss buffers (LSH projections, ND class means) are identical on
every rank by construction. The teacher is not in the state dict (it is never trained or
saved): each rank loads ``teacher_ckpt`` itself, and a rank that read a different file
(a node-local path, a checkpoint rewritten while the job started) would silently distil
from a different teacher. ``check_same_on_all_ranks`` compares cheap fingerprints of the
tensors once, when training starts.
"""
from typing import Dict, List

import torch
from mmengine.dist import all_gather, get_dist_info
from torch import Tensor


def tensor_fingerprints(tensors: Dict[str, Tensor]) -> Tensor:
    """Per-tensor fingerprints, ``[len(tensors), 3]`` float64: the element count, the sum
    and the sum of ``x_i * (1 + i / (numel - 1))`` over the flattened tensor (catches
    permuted values).

    A tensor holding inf / NaN gets a non-finite fingerprint; two equal non-finite
    fingerprints compare as equal in :func:`check_same_on_all_ranks`."""
    rows: List[Tensor] = []
    for value in tensors.values():
        flat = value.detach().reshape(-1).double()
        ramp = torch.linspace(1.0, 2.0, flat.numel(), dtype=torch.float64,
                              device=flat.device)
        rows.append(torch.stack([flat.new_tensor(float(flat.numel())), flat.sum(),
                                 (flat * ramp).sum()]))
    if not rows:
        return torch.zeros(0, 3, dtype=torch.float64)
    return torch.stack(rows)


def check_same_on_all_ranks(tensors: Dict[str, Tensor], what: str, fix: str) -> None:
    """Raise on every rank if some rank's ``tensors`` differ from rank 0's.

    A no-op outside a distributed run. One ``all_gather`` of ``[len(tensors), 3]``
    float64 values; call it once (at the start of training), not per step.

    Args:
        tensors: name -> tensor; every rank must pass the same names in the same order.
        what: what the tensors are, for the message (``'teacher'``).
        fix: how to make the ranks agree, appended to the message.

    Raises:
        RuntimeError: ``"rank 1's teacher differs from rank 0's in 'backbone.conv1.weight'
            (and 3 more); <fix>"``.
    """
    _, world_size = get_dist_info()
    if world_size < 2:
        return
    names = list(tensors)
    gathered = all_gather(tensor_fingerprints(tensors))
    reference = gathered[0].cpu()
    for rank, fingerprints in enumerate(gathered[1:], start=1):
        fingerprints = fingerprints.cpu()
        if fingerprints.shape != reference.shape:
            raise RuntimeError(f"rank {rank}'s {what} has {fingerprints.shape[0]} tensors "
                               f"but rank 0's {reference.shape[0]}; {fix}")
        same = torch.isclose(fingerprints, reference, rtol=1e-9, atol=0.0,
                             equal_nan=True).all(dim=1)
        differing = [name for name, ok in zip(names, same.tolist()) if not ok]
        if differing:
            more = f' (and {len(differing) - 1} more)' if len(differing) > 1 else ''
            raise RuntimeError(f"rank {rank}'s {what} differs from rank 0's in "
                               f"'{differing[0]}'{more}; {fix}")
