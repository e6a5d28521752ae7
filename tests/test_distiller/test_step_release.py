"""Nothing of one training step survives it: after ``train_step`` the recorders, RoI
recorders and step caches hold no tensor of the step (memory stays flat over a run;
``tools/benchmark.py --rss-iters`` measures the resident set)."""
import gc
import weakref

import pytest
import torch
from mmengine.optim import OptimWrapper

from helpers import repo_path
from mmkd.apis.benchmark import build_distiller, load_config, make_batch

CONFIGS = {
    'fcfd_frcnn': 'configs/fcfd/fcfd_faster_rcnn_r18_r18w16_fpn_synth.py',  # roi.*, roi_forward
    'nd_retina': 'configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py',  # dense.labels, dense.*
    'lsh_retina': 'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py',  # dense.keep_mask
}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_no_tensor_of_a_step_outlives_it(name, tmp_path):
    cfg = load_config(repo_path(CONFIGS[name]))
    model = build_distiller(cfg, 'cpu', str(tmp_path))
    model.train()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4))
    data = make_batch(model, 2, 64, 4, preprocess=False)
    refs = []

    def keep(module, args, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        refs.append(weakref.ref(first))

    hooked = [model.student.neck, model.teacher.neck]
    if hasattr(model.student, 'roi_head'):
        hooked.append(model.student.roi_head.bbox_head.fc_cls)
    handles = [m.register_forward_hook(keep) for m in hooked]
    try:
        log_vars = model.train_step(data, wrapper)
    finally:
        for handle in handles:
            handle.remove()
    assert any(k.startswith('distill.loss_') for k in log_vars)
    assert len(refs) >= len(hooked)

    for recorder in (model.student_recorder, model.teacher_recorder):
        assert all(not calls for calls in recorder._records.values()), recorder.owner
    if hasattr(model.student, 'roi_head'):
        assert model.student_roi.sampled is None and model.student_roi._embedding is None
        assert model.teacher_roi._embedding is None
    if getattr(model, 'student_targets', None) is not None:
        assert model.student_targets.labels is None
    gc.collect()
    alive = [i for i, ref in enumerate(refs) if ref() is not None]
    assert not alive, f'{len(alive)} of the step\'s {len(refs)} watched tensors are alive'
