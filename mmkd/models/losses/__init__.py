"""Distillation losses: the math, one loss per file.

Each file has a functional core on plain tensors and a registered ``nn.Module`` wrapper
that applies ``loss_weight``. Shapes are stated in every docstring.
"""
