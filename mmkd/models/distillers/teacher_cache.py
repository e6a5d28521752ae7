"""Reusing the frozen teacher's outputs for images it has already seen (opt-in, CPU)."""
import hashlib
import logging
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from mmengine.logging import print_log
from torch import Tensor

#: what one teacher pass leaves: its ``extract_feat`` levels (or ``()`` when nothing
#: needs them), and the outputs its recorder captured meanwhile (module path -> one entry
#: per call)
TeacherPass = Tuple[Any, Dict[str, List[Any]]]


def _leaves(value: Any) -> List[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return []


def _check_batch_first(value: Any, batch: int, where: str) -> None:
    """Every tensor of a teacher output must hold one row per image."""
    for leaf in _leaves(value):
        if leaf.dim() == 0 or leaf.size(0) != batch:
            raise ValueError(
                f'teacher_cache: the teacher output {where} has shape '
                f'{tuple(leaf.shape)}, not one row per image of the batch of {batch}, so '
                'it cannot be cached per image; remove teacher_cache from the distiller '
                'config for this teacher.')
    if not isinstance(value, (Tensor, tuple, list, dict)):
        raise ValueError(f'teacher_cache: the teacher output {where} is a '
                         f'{type(value).__name__}; only tensors and tuples / lists / dicts '
                         'of them can be cached per image. Remove teacher_cache.')


def _rebuild(like: Any, items) -> Any:
    """A sequence of ``like``'s type holding ``items`` (a namedtuple takes them as
    positional arguments, a tuple / list as one iterable)."""
    items = list(items)
    return type(like)(*items) if hasattr(like, '_fields') else type(like)(items)


def _row(value: Any, i: int) -> Any:
    """Image ``i`` of a batch-first nest of tensors, ``[1, ...]`` per tensor, copied (a
    view would keep the whole batch alive)."""
    if isinstance(value, Tensor):
        return value[i:i + 1].clone()
    if isinstance(value, dict):
        return {k: _row(v, i) for k, v in value.items()}
    return _rebuild(value, (_row(v, i) for v in value))


def _stack(rows: List[Any]) -> Any:
    """The inverse of :func:`_row`: per-image nests, concatenated along the batch."""
    first = rows[0]
    if isinstance(first, Tensor):
        return torch.cat(rows, dim=0)
    if isinstance(first, dict):
        return {k: _stack([r[k] for r in rows]) for k in first}
    return _rebuild(first, (_stack(list(parts)) for parts in zip(*rows)))


def _nbytes(value: Any) -> int:
    return sum(leaf.numel() * leaf.element_size() for leaf in _leaves(value))


class TeacherOutputCache:
    """A per-image memo of the teacher's input-only pass.

    The teacher is frozen and in eval mode, so what it computes from one image — its
    ``extract_feat`` levels ``[1, C, H_l, W_l]`` and what its recorder captured in the
    same pass (``neck``, dense-head logits, towers ...) — depends on that image alone.
    On small data the same augmented image comes back again and again (600 images × 2
    flips drawn 3200 times in 400 iterations of batch 8: about two thirds of a run's
    images were seen before), and the teacher's forward is the larger part of a
    distillation step for a small student. The cache keys each image by a digest of its
    input tensor (bytes, shape, dtype), runs the teacher on the images it has not seen
    (one sub-batch), and assembles the batch's outputs from per-image copies.

    What is not cached: anything that depends on the student (its RoIs: the teacher's
    RoI head runs on the cached features every step; FCFD's teacher head on bridged
    student features) or on other images of the batch.

    Exactness: a cached image's outputs are the ones the teacher computed for it, in a
    batch of other images. Its convolutions give the same values per image whatever the
    rest of the batch, up to the float rounding of the kernel chosen for the batch size:
    every distill loss equals the uncached distiller's to 1e-5 relative
    (``tests/test_distiller/test_teacher_cache.py``).

    The digest reads each input on the host: the cache is for CPU training (the demo,
    CPU-sized configs), and refuses inputs on a GPU, where reading them back would
    synchronise every step and the teacher's forward is cheap anyway.

    On disk (``dir``): every image the teacher runs on is also written to
    ``dir/<namespace>/<key>.pt``, and an image missing from memory is looked up there
    before the teacher runs, so that runs which share a teacher (a method's seeds, and the
    methods that record the same teacher outputs) compute each image once between them.
    The ``namespace`` (:meth:`bind`, set by the distiller) is a digest of everything
    besides the image that the outputs depend on: the teacher's weights and architecture,
    its input normalisation and precision, and which outputs are recorded. A file is
    written under a temporary name and renamed, so a run that reads it while another
    writes it sees the whole file or none; a file that cannot be read is computed again.

    Args:
        max_mib (float): memory the cached outputs may take; images beyond it are run
            through the teacher (or read from ``dir``) every time they come (nothing is
            evicted).
        dir (str, optional): a directory shared by the runs that may reuse each other's
            teacher outputs. Off by default (memory only).
    """

    def __init__(self, max_mib: float = 1024.0, dir: Optional[str] = None) -> None:
        if not isinstance(max_mib, (int, float)) or isinstance(max_mib, bool) \
                or max_mib <= 0:
            raise ValueError(f'teacher_cache.max_mib must be a positive number of MiB, '
                             f'got {max_mib!r}')
        if dir is not None and (not isinstance(dir, str) or not dir):
            raise ValueError(f'teacher_cache.dir must be a directory path, got {dir!r}')
        self.max_bytes = int(max_mib * 2**20)
        self.dir = dir
        #: what the outputs depend on besides the image (:meth:`bind`); needed with ``dir``
        self.namespace: Optional[str] = None
        self.bytes = 0
        self.entries: Dict[bytes, TeacherPass] = {}
        #: images answered from the cache / run through the teacher, since construction
        self.hits = 0
        self.misses = 0
        #: of the hits, the images read from ``dir`` (computed by another run)
        self.disk_hits = 0
        self._read_failed = False
        #: the log gets :meth:`stats` each time this many more images were seen
        self.report_every = 1000
        self._next_report = self.report_every

    @staticmethod
    def key(image: Tensor) -> bytes:
        """Digest of one input image ``[3, H, W]`` (bytes, shape, dtype)."""
        data = image.detach().contiguous().view(-1).view(torch.uint8).numpy()
        digest = hashlib.blake2b(data.tobytes(), digest_size=20)
        digest.update(repr((tuple(image.shape), str(image.dtype))).encode())
        return digest.digest()

    def bind(self, namespace: str) -> None:
        """Set the digest of what the teacher outputs depend on besides the image (the
        distiller's :meth:`teacher_namespace`); entries on disk are kept under it."""
        self.namespace = namespace

    def _path(self, key: bytes) -> str:
        if self.namespace is None:
            raise RuntimeError('teacher_cache.dir is set but the cache was not bound to '
                               'a teacher (TeacherOutputCache.bind): mmkd bug')
        return osp.join(self.dir, self.namespace, key.hex() + '.pt')

    def _read(self, key: bytes) -> Optional[TeacherPass]:
        path = self._path(key)
        if not osp.isfile(path):
            return None
        try:
            feats, records = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as error:  # a truncated or foreign file: computed again
            if not self._read_failed:
                self._read_failed = True
                print_log(f'mmkd: teacher cache: cannot read {path} ({error}); the '
                          'teacher runs on such images again and rewrites them',
                          logger='current', level=logging.WARNING)
            return None
        return feats, records

    def _write(self, key: bytes, entry: TeacherPass) -> None:
        path = self._path(key)
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp'
        torch.save(entry, tmp)
        os.replace(tmp, path)

    def _keep(self, key: bytes, entry: TeacherPass) -> None:
        size = _nbytes(entry)
        if self.bytes + size <= self.max_bytes:
            self.entries[key] = entry
            self.bytes += size

    def __call__(self, inputs: Tensor,
                 run_teacher: Callable[[Tensor], TeacherPass]) -> TeacherPass:
        """The teacher pass of ``inputs`` ``[B, 3, H, W]``: ``run_teacher(sub_batch)``
        (which returns ``(feats, records)``) on the unseen images only, the rest from
        the cache; returns the full batch's ``(feats, records)``."""
        if inputs.device.type != 'cpu':
            raise RuntimeError(
                f'teacher_cache is for CPU training, the inputs are on {inputs.device}: '
                'digesting them would synchronise the device every step. Remove '
                'teacher_cache from the distiller config for GPU runs.')
        keys = [self.key(image) for image in inputs]
        known: Dict[int, TeacherPass] = {}
        for i, key in enumerate(keys):
            entry = self.entries.get(key)
            if entry is None and self.dir is not None:
                entry = self._read(key)
                if entry is not None:
                    self.disk_hits += 1
                    self._keep(key, entry)
            if entry is not None:
                known[i] = entry
        todo = [i for i in range(len(keys)) if i not in known]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if self.hits + self.misses >= self._next_report:
            self._next_report += self.report_every
            print_log(f'mmkd: {self.stats()}', logger='current')
        if todo:
            index = torch.tensor(todo, dtype=torch.long)
            sub = inputs if len(todo) == len(keys) else inputs.index_select(0, index)
            feats, records = run_teacher(sub)
            for where, value in [('extract_feat', feats)] + list(records.items()):
                _check_batch_first(value, len(todo), where)
            for j, i in enumerate(todo):
                known[i] = (_row(feats, j), {p: [_row(call, j) for call in calls]
                                             for p, calls in records.items()})
                if keys[i] not in self.entries:  # an image twice in one batch: once
                    self._keep(keys[i], known[i])
                    if self.dir is not None:
                        self._write(keys[i], known[i])
        rows = [known[i] for i in range(len(keys))]
        feats = _stack([row[0] for row in rows])
        records = {path: [_stack([row[1][path][c] for row in rows])
                          for c in range(len(rows[0][1][path]))] for path in rows[0][1]}
        return feats, records

    def stats(self) -> Optional[str]:
        seen = self.hits + self.misses
        if not seen:
            return None
        disk = f', {self.disk_hits} of them from {self.dir}' if self.dir else ''
        return (f'teacher cache: {self.hits}/{seen} images answered from the cache '
                f'({100 * self.hits / seen:.0f} %{disk}), {len(self.entries)} kept in '
                f'{self.bytes / 2**20:.0f} MiB')


def build_teacher_cache(cfg: Union[dict, bool, None]) -> Optional[TeacherOutputCache]:
    """``None`` (off) or a :class:`TeacherOutputCache` from its config dict."""
    if cfg is None or cfg is False:
        return None
    if cfg is True:
        return TeacherOutputCache()
    if not isinstance(cfg, dict):
        raise ValueError(f'teacher_cache must be None, True or a dict such as '
                         f'dict(max_mib=1024, dir=None), got {cfg!r}')
    unknown = sorted(set(cfg) - {'max_mib', 'dir'})
    if unknown:
        raise ValueError(f'teacher_cache: unknown option(s) {unknown}; it takes max_mib '
                         'and dir')
    return TeacherOutputCache(**cfg)
