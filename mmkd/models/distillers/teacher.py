"""Building, loading and freezing the teacher."""
import os
import os.path as osp
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.runner.checkpoint import _load_checkpoint

# ``mmkd::`` paths: the installed package's .mim/configs, the folder MMEngine reads for
# them in ``_base_`` lists (a link to configs/ in a checkout, a copy in a wheel)
from mmkd.utils.package_scope import MMKD_CONFIG_ROOT

ConfigLike = Union[dict, ConfigDict, str]


def resolve_model_config(cfg: ConfigLike, role: str = 'teacher') -> ConfigDict:
    """The ``model`` config of ``cfg``.

    Args:
        cfg: a model config dict; or a config file given as a path (absolute or relative
            to the working directory), as ``mmkd::path/in/configs.py``, or as
            ``mmdet::path/in/mmdet/configs.py`` (any OpenMMLab package with ``.mim``
            configs); the file's ``model`` is used.
    """
    if isinstance(cfg, (dict, ConfigDict)):
        return ConfigDict(cfg)
    if not isinstance(cfg, str):
        raise TypeError(f'{role} must be a model config dict or a config file path, '
                        f'got {type(cfg).__name__}')
    if cfg.startswith('mmkd::'):
        path = osp.join(MMKD_CONFIG_ROOT, cfg[len('mmkd::'):])
    elif '::' in cfg:
        from mmengine.hub import get_config
        return _model_with_preprocessor(get_config(cfg, pretrained=False))
    else:
        path = cfg
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{role} config {cfg!r} not found (looked at {osp.abspath(path)}); give a path '
            "relative to the working directory, an 'mmkd::' or 'mmdet::' path, or the "
            'model dict itself.')
    return _model_with_preprocessor(Config.fromfile(path))


def _model_with_preprocessor(cfg: Config) -> ConfigDict:
    """``cfg.model``, with the file's top-level ``data_preprocessor`` (mmpretrain configs
    keep it there) merged in as MMEngine's ``Runner`` does when it trains the file."""
    model = ConfigDict(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', ConfigDict(cfg.data_preprocessor))
    return model


def load_teacher_checkpoint(teacher: nn.Module, checkpoint: str) -> Dict:
    """Load ``checkpoint`` into ``teacher`` strictly and return the checkpoint's meta.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the checkpoint does not fit the teacher config (missing or unexpected
            keys, or shape mismatches), listing the first offenders.
    """
    is_url = checkpoint.startswith(('http://', 'https://', 'torchvision://',
                                    'open-mmlab://', 'modelzoo://', 's3://'))
    if not is_url and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'teacher checkpoint {checkpoint!r} not found (cwd {os.getcwd()}); train the '
            'teacher first or fix teacher_ckpt in the config.')
    if is_url:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    else:
        # A training checkpoint (with MMEngine's message hub) needs the full unpickler;
        # the file is the one the config names, trusted like any checkpoint.
        ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'teacher checkpoint {checkpoint!r} holds no state_dict.')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    if any(k.startswith('student.') for k in state):
        raise ValueError(
            f'teacher checkpoint {checkpoint!r} is a distiller checkpoint; export its '
            'student first: python tools/export_student.py CKPT --out teacher.pth')
    own = teacher.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                           ('shape mismatches', mismatched)):
            if keys:
                shown = ', '.join(keys[:5]) + (f' (+{len(keys) - 5} more)' if len(keys) > 5 else '')
                parts.append(f'{len(keys)} {what}: {shown}')
        raise ValueError(
            f'teacher checkpoint {checkpoint!r} does not match the teacher config ('
            + '; '.join(parts) + '). Is teacher_ckpt a checkpoint of this teacher config?')
    teacher.load_state_dict(state, strict=True)
    return ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}


def freeze(model: nn.Module) -> nn.Module:
    """Switch ``model`` to eval mode and turn off gradients of all its parameters."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


class InputRenormalizer(nn.Module):
    """Maps an input normalised for the student to the teacher's normalisation.

    ``x_t = (x_s · std_s + mean_s  [channels flipped if the colour orders differ]
    − mean_t) / std_t``, per channel, ``[B, 3, H, W] -> [B, 3, H, W]``. Identity when
    both data preprocessors normalise the same way.
    """

    def __init__(self, student_preprocessor: Optional[dict],
                 teacher_preprocessor: Optional[dict]) -> None:
        super().__init__()
        s, t = dict(student_preprocessor or {}), dict(teacher_preprocessor or {})
        key = lambda c: (tuple(c.get('mean') or ()), tuple(c.get('std') or ()),  # noqa
                         bool(c.get('bgr_to_rgb', c.get('rgb_to_bgr',
                                                        c.get('to_rgb', False)))))
        self.identity = key(s) == key(t)
        if self.identity:
            return

        def stats(c: dict, name: str) -> torch.Tensor:
            value = c.get(name)
            default = 0.0 if name == 'mean' else 1.0
            return torch.tensor(value if value is not None else [default] * 3,
                                dtype=torch.float32).view(1, -1, 1, 1)

        self.register_buffer('mean_s', stats(s, 'mean'), persistent=False)
        self.register_buffer('std_s', stats(s, 'std'), persistent=False)
        self.register_buffer('mean_t', stats(t, 'mean'), persistent=False)
        self.register_buffer('std_t', stats(t, 'std'), persistent=False)
        self.flip = key(s)[2] != key(t)[2]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return inputs
        raw = inputs * self.std_s + self.mean_s
        if self.flip:
            raw = raw.flip(1)
        return (raw - self.mean_t) / self.std_t
