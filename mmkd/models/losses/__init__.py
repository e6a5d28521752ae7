"""Distillation losses: the math, one loss per file.

Each file has a functional core on plain tensors and a registered ``nn.Module`` wrapper
that applies ``loss_weight``. Shapes are stated in every docstring.
"""
from .feature_mse_loss import FeatureMSELoss, feature_mse_loss  # noqa: F401
from .kd_loss import KDLoss, kd_loss  # noqa: F401
from .lsh_loss import LSHLoss, lsh_loss  # noqa: F401
from .nd_loss import DenseNDLoss, NDLoss, dense_nd_loss, nd_loss  # noqa: F401
from .amd_loss import AMDLoss, amd_loss  # noqa: F401
from .dense_lsh_loss import DenseLSHLoss, dense_lsh_loss  # noqa: F401
from .fcfd_loss import FCFDDenseLoss, FCFDRoILoss  # noqa: F401
from .fcfd_cls_loss import FCFDClsLoss  # noqa: F401
from .pkd_loss import PKDLoss, pkd_loss  # noqa: F401
