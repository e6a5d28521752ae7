"""Per-loss weight schedules: linear warm-up and a stop point."""
from typing import Optional


class LossSchedule:
    """Multiplier of one distillation loss as a function of training progress.

    ``factor = 0`` from ``stop_iter`` / ``stop_epoch`` on; otherwise
    ``min(1, (iter + 1) / warmup_iters) · min(1, (epoch + 1) / warmup_epochs)``, with
    0-based ``iter`` and ``epoch`` as MMEngine counts them (so the first epoch of a
    20-epoch warm-up trains at 1/20, as in KD++).

    The progress comes from :class:`~mmkd.hooks.DistillScheduleHook`, which reads the
    runner's counters before every iteration: a resumed run picks up exactly where the
    interrupted one stopped.
    """

    def __init__(self,
                 warmup_iters: int = 0,
                 warmup_epochs: int = 0,
                 stop_iter: Optional[int] = None,
                 stop_epoch: Optional[int] = None) -> None:
        for name, value in (('warmup_iters', warmup_iters), ('warmup_epochs', warmup_epochs),
                            ('stop_iter', stop_iter), ('stop_epoch', stop_epoch)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f'schedule {name} must be a non-negative int, got {value!r}')
        self.warmup_iters = warmup_iters
        self.warmup_epochs = warmup_epochs
        self.stop_iter = stop_iter
        self.stop_epoch = stop_epoch

    @property
    def is_constant(self) -> bool:
        """True if the factor is 1 throughout (no progress needed)."""
        return not (self.warmup_iters or self.warmup_epochs or self.stop_iter is not None
                    or self.stop_epoch is not None)

    def factor(self, iteration: int, epoch: int) -> float:
        if self.stop_iter is not None and iteration >= self.stop_iter:
            return 0.0
        if self.stop_epoch is not None and epoch >= self.stop_epoch:
            return 0.0
        factor = 1.0
        if self.warmup_iters:
            factor *= min(1.0, (iteration + 1) / self.warmup_iters)
        if self.warmup_epochs:
            factor *= min(1.0, (epoch + 1) / self.warmup_epochs)
        return factor

    def __repr__(self) -> str:
        return (f'LossSchedule(warmup_iters={self.warmup_iters}, warmup_epochs='
                f'{self.warmup_epochs}, stop_iter={self.stop_iter}, '
                f'stop_epoch={self.stop_epoch})')
