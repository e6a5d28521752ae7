"""Every mmdet detector family distils: two-stage (Faster, Mask, Cascade R-CNN), one-stage
(RetinaNet, FCOS, ATSS, GFL, TOOD), YOLOX, RTMDet and DETR-like (Deformable DETR).

Each family's student and teacher are mmdet's own stock config (``mmdet/.mim/configs``)
narrowed for the CPU (ResNet-18 instead of R50, 64-px images, few proposals / sampled
RoIs / queries / transformer layers; the teacher has the student's architecture and
other random weights). Each trains through the runner, epoch-based, with the family's
stock ``custom_hooks`` (their epochs moved into the tiny run so that every switch
happens inside it) plus mmkd's, and with FPN L2 + PKD on every neck level; the two-stage
families with a box head also get RoI-logit KD and LSH on the RoI embedding.

One test per family: it trains, checks what every family must do, then that family's
own hooks and limits (:data:`CHECKS`).
"""
import copy
import json
import math
import os.path as osp

import mmdet
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from mmkd.datasets import generate_detection_dataset
from mmkd.testing import build_model, tiny_run_config, write_random_checkpoint
from mmkd.utils.export import export_student

MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
IMG = (64, 64)
#: ResNet-18 stage widths, by out index
R18_CHANNELS = (64, 128, 256, 512)


def _r18(model: dict) -> None:
    """ResNet-50 -> ResNet-18 (same out indices), the neck's inputs to match."""
    model.backbone.depth = 18
    model.neck.in_channels = [R18_CHANNELS[i] for i in model.backbone.out_indices]


def _few_rois(model: dict) -> None:
    """Two-stage: 100 proposals per image, 32 sampled RoIs, 128-d box-head FCs."""
    for cfg in (model.train_cfg.rpn_proposal, model.test_cfg.rpn):
        cfg.nms_pre, cfg.max_per_img = 200, 100
    for rcnn in ([model.train_cfg.rcnn] if isinstance(model.train_cfg.rcnn, dict)
                 else model.train_cfg.rcnn):
        rcnn.sampler.num = 32
    heads = model.roi_head.bbox_head
    for head in ([heads] if isinstance(heads, dict) else heads):
        head.fc_out_channels = 128


def _small_detr(model: dict) -> None:
    _r18(model)
    model.encoder.num_layers = model.decoder.num_layers = 1
    model.num_queries = 10


def _fpn_losses(num_levels: int) -> dict:
    levels = tuple(range(num_levels))
    return dict(
        fpn_l2=dict(loss=dict(type='FeatureMSELoss', loss_weight=1.0),
                    inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck',
                                valid_mask='valid_mask'),
                    levels=levels),
        fpn_pkd=dict(loss=dict(type='PKDLoss', loss_weight=1.0),
                     inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
                     levels=levels))


#: the RoI losses of a two-stage detector with one box head (128-d fc7, see _few_rois)
ROI_LOSSES = dict(
    roi_kd=dict(loss=dict(type='KDLoss', temperature=1.0, mode='softmax', loss_weight=1.0),
                inputs=dict(student_logits='student.roi.cls_score',
                            teacher_logits='teacher.roi.cls_score')),
    roi_lsh=dict(loss=dict(type='LSHLoss', in_channels=128, num_hashes=64, with_l2=True,
                           sigma='roi_head.bbox_head.fc_cls.weight', loss_weight=1.0),
                 inputs=dict(student_feat='student.roi.embedding',
                             teacher_feat='teacher.roi.embedding')))


def _hooks(hooks, **by_type):
    """The stock custom hooks with per-type overrides (``by_type[type] = dict(...)``)."""
    hooks = copy.deepcopy(list(hooks or []))
    for hook in hooks:
        hook.update(by_type.get(hook['type'], {}))
    return hooks


#: name -> stock config, narrowing, neck levels, RoI losses, epochs, hook overrides
FAMILIES = {
    'faster_rcnn': dict(config='faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                        narrow=(_r18, _few_rois), levels=5, roi=True),
    'mask_rcnn': dict(config='mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                      narrow=(_r18, _few_rois), levels=5, roi=True),
    'cascade_rcnn': dict(config='cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
                         narrow=(_r18, _few_rois), levels=5),
    'retinanet': dict(config='retinanet/retinanet_r50_fpn_1x_coco.py', narrow=(_r18, ),
                      levels=5),
    'fcos': dict(config='fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', narrow=(_r18, ),
                 levels=5),
    'atss': dict(config='atss/atss_r50_fpn_1x_coco.py', narrow=(_r18, ), levels=5),
    'gfl': dict(config='gfl/gfl_r50_fpn_1x_coco.py', narrow=(_r18, ), levels=5),
    # TOOD switches its assigner and loss at train_cfg.initial_epoch (4 of 12): epoch 1
    'tood': dict(config='tood/tood_r50_fpn_1x_coco.py', narrow=(_r18, ), levels=5,
                 model={'train_cfg.initial_epoch': 1}),
    # YOLOXModeSwitchHook: no mosaic / mixup and the L1 loss for the last
    # num_last_epochs (15 of 300; switches when epoch + 1 >= max_epochs - num_last_epochs):
    # 1 of 3, i.e. from epoch 1. EMAHook (ExpMomentumEMA): gamma=1 (stock 2000) so that
    # the average visibly lags the weights within 3 iterations.
    'yolox': dict(config='yolox/yolox_tiny_8xb8-300e_coco.py', narrow=(), levels=3,
                  epochs=3,
                  hooks=dict(YOLOXModeSwitchHook=dict(num_last_epochs=1),
                             EMAHook=dict(gamma=1))),
    # PipelineSwitchHook: stage-2 pipeline (no mosaic / mixup) from epoch 280 of 300 -> 1 of 2
    'rtmdet': dict(config='rtmdet/rtmdet_tiny_8xb32-300e_coco.py', narrow=(), levels=3,
                   hooks=dict(EMAHook=dict(gamma=1),
                              PipelineSwitchHook=dict(switch_epoch=1))),
    'deformable_detr': dict(config='deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
                            narrow=(_small_detr, ), levels=4, set_epoch=True),
}


def family_config(name: str, data_root: str, work_dir: str) -> Config:
    """The tiny distillation config of family ``name`` (teacher checkpoint written)."""
    spec = FAMILIES[name]
    stock = Config.fromfile(osp.join(MMDET_CONFIGS, spec['config']))
    student = copy.deepcopy(stock.model)
    for narrow in spec['narrow']:
        narrow(student)
    for key, value in spec.get('model', {}).items():
        owner = student
        *path, last = key.split('.')
        for part in path:
            owner = owner[part]
        owner[last] = value
    losses = _fpn_losses(spec['levels'])
    if spec.get('roi'):
        losses.update(copy.deepcopy(ROI_LOSSES))
    cfg = copy.deepcopy(stock)
    cfg.model = ConfigDict(type='DetectionDistiller', student=student,
                           teacher=copy.deepcopy(student), distill_losses=losses)
    cfg.custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
    hooks = _hooks(stock.get('custom_hooks'), **spec.get('hooks', {}))
    if spec.get('set_epoch'):
        hooks.append(dict(type='SetEpochInfoHook'))
    hooks += [dict(type='DistillScheduleHook'), dict(type='StudentExportHook')]
    cfg.custom_hooks = hooks
    ema = any(h['type'] == 'EMAHook' for h in hooks)
    cfg = tiny_run_config(cfg, data_root, work_dir, img_scale=IMG, batch_size=2,
                          max_epochs=spec.get('epochs', 2), save_checkpoint=ema)
    cfg.model.teacher_ckpt = write_random_checkpoint(
        cfg.model.teacher, osp.join(work_dir, 'teacher.pth'), seed=1)
    # The runner formats its whole config with yapf four times (log, dump, visualiser,
    # runtime info); two inline detector dicts made that most of a tiny run's time.
    for side in ('student', 'teacher'):
        path = osp.join(work_dir, f'{side}.json')
        with open(path, 'w') as f:
            json.dump(dict(model=cfg.model[side].to_dict()), f)
        cfg.model[side] = path
    cfg.log_level = 'WARNING'
    return cfg


@pytest.fixture(scope='module')
def family_data(tmp_path_factory) -> str:
    """2 training images: one iteration of 2 images per epoch."""
    root = str(tmp_path_factory.mktemp('family_data'))
    generate_detection_dataset(root, num_train=2, num_val=2, img_size=128, seed=0)
    for split in ('train', 'val'):  # Mask R-CNN: each box as its polygon
        path = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(path) as f:
            coco = json.load(f)
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        with open(path, 'w') as f:
            json.dump(coco, f)
    return root


class Trained:
    """A finished tiny run: its runner and config."""

    def __init__(self, name: str, data_root: str, work_dir: str) -> None:
        self.name = name
        self.cfg = family_config(name, data_root, work_dir)
        self.runner = Runner.from_cfg(self.cfg)
        self.model = self.runner.model
        self.epochs_seen = []
        if FAMILIES[name].get('set_epoch'):
            # mmdet's detectors have no set_epoch: give this student one, to see it called
            self.model.student.set_epoch = self.epochs_seen.append
        self.runner.train()
        self.hub = self.runner.message_hub

    def logged(self, key: str) -> list:
        return [float(v) for v in self.hub.get_scalar(f'train/{key}').data[0]]

    def hook(self, type_name: str):
        found = [h for h in self.runner.hooks if type(h).__name__ == type_name]
        assert len(found) == 1, [type(h).__name__ for h in self.runner.hooks]
        return found[0]


# ------------------------------------------------------------------ per-family checks
def check_retinanet(run: Trained) -> None:
    """What the families' hooks reach on ``runner.model`` is the student's, registered
    once (under ``student.``), never the teacher's; nothing else is invented."""
    model = run.model
    for part in ('backbone', 'neck', 'bbox_head'):
        assert getattr(model, part) is getattr(model.student, part)
        assert getattr(model, part) is not getattr(model.teacher, part)
    assert not any(k.startswith(('bbox_head.', 'neck.', 'backbone.'))
                   for k in model.state_dict())
    with pytest.raises(AttributeError):
        model.roi_head  # RetinaNet has none
    with pytest.raises(AttributeError):
        model.no_such_attribute


def check_cascade_rcnn(run: Trained) -> None:
    """Cascade R-CNN distils its FPN (trained); RoI sources, which would need one of its
    three box heads, are refused with a clear error when the model is built."""
    cfg = copy.deepcopy(run.cfg.model)
    cfg.distill_losses = copy.deepcopy(ROI_LOSSES)
    with pytest.raises(ValueError, match=r'CascadeRoIHead with 3 box heads'):
        build_model(cfg, 'mmdet')


def check_tood(run: Trained) -> None:
    head = run.model.student.bbox_head
    assert head.initial_epoch == 1 and head.epoch == 1  # the last step: TOOD's own assigner


def check_deformable_detr(run: Trained) -> None:
    assert run.epochs_seen == [0, 1]  # SetEpochInfoHook reached the student


def check_yolox(run: Trained) -> None:
    """YOLOXModeSwitchHook, at epoch 1 of 3: the student's head gets the L1 loss (logged
    from then on only), the mosaic / affine / mixup transforms are skipped."""
    assert run.model.student.bbox_head.use_l1
    assert not run.model.teacher.bbox_head.use_l1
    assert len(run.logged('loss_cls')) == 3
    assert len(run.logged('loss_l1')) == 2  # epochs 1 and 2, not 0
    dataset = run.runner.train_dataloader.dataset
    assert set(dataset._skip_type_keys) == {'Mosaic', 'RandomAffine', 'MixUp'}
    assert run.hook('SyncNormHook')  # one process: a no-op, but it ran on the distiller
    check_ema_export(run)


def check_rtmdet(run: Trained) -> None:
    """PipelineSwitchHook at epoch 1 of 2: stage 2's pipeline (no cached mosaic / mixup)."""
    pipeline = run.runner.train_dataloader.dataset.pipeline.transforms
    types = [type(t).__name__ for t in pipeline]
    assert 'CachedMosaic' not in types and 'CachedMixUp' not in types
    assert 'RandomResize' in types
    check_ema_export(run)


def check_ema_export(run: Trained) -> None:
    """EMAHook averages the student (not the teacher); the checkpoint's state_dict holds
    the averages, and the exported student carries them, not the raw weights."""
    epochs = FAMILIES[run.name].get('epochs', 2)
    ema_model = run.hook('EMAHook').ema_model.module
    ema = ema_model.student.state_dict()
    raw = run.model.student.state_dict()
    assert not any(k.startswith('teacher.') for k in ema_model.state_dict())
    exported = torch.load(osp.join(run.cfg.work_dir, f'epoch_{epochs}_student.pth'),
                          map_location='cpu', weights_only=False)
    state = exported['state_dict']
    assert state.keys() == ema.keys()
    assert all(torch.equal(state[k], v) for k, v in ema.items())
    lagging = [k for k, v in raw.items()
               if v.is_floating_point() and not torch.equal(state[k], v)]
    assert lagging, 'the exported student equals the raw weights: EMA not exported'
    assert exported['meta']['mmkd_export']['weights'] == 'ema'
    # tools/export_student.py on the distiller checkpoint gives the same weights
    again = export_student(osp.join(run.cfg.work_dir, f'epoch_{epochs}.pth'),
                           osp.join(run.cfg.work_dir, 'again.pth'))
    again = torch.load(again, map_location='cpu', weights_only=False)['state_dict']
    assert all(torch.equal(again[k], v) for k, v in state.items())


CHECKS = dict(retinanet=check_retinanet, cascade_rcnn=check_cascade_rcnn, tood=check_tood,
              deformable_detr=check_deformable_detr, yolox=check_yolox, rtmdet=check_rtmdet)


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_family_distils_through_the_runner(name, family_data, tmp_path):
    """The run of family ``name`` (one per test, freed after it): every epoch ran with
    its stock hooks, every distill loss was logged finite at each step, the teacher
    stayed frozen, then the family's own checks (:data:`CHECKS`)."""
    run = Trained(name, family_data, str(tmp_path))
    spec = FAMILIES[name]
    epochs = spec.get('epochs', 2)
    assert run.runner.epoch == epochs and run.runner.iter == epochs  # 1 iteration / epoch
    losses = set(run.cfg.model.distill_losses)
    assert {'fpn_l2', 'fpn_pkd'} <= losses
    assert ({'roi_kd', 'roi_lsh'} <= losses) == bool(spec.get('roi'))
    for loss in losses:
        values = run.logged(f'distill.loss_{loss}')
        assert len(values) == epochs, (loss, values)
        assert all(math.isfinite(v) for v in values), (loss, values)
        assert any(v > 0 for v in values), (loss, values)  # the two networks differ
    assert math.isfinite(run.logged('loss')[-1])
    # the teacher is frozen at its checkpoint and nothing of it is optimised
    model = run.model
    expected = torch.load(run.cfg.model.teacher_ckpt, map_location='cpu',
                          weights_only=True)['state_dict']
    actual = model.teacher.state_dict()
    assert actual.keys() == expected.keys()
    assert all(torch.equal(actual[k], v) for k, v in expected.items())
    optimised = {id(p) for g in run.runner.optim_wrapper.optimizer.param_groups
                 for p in g['params']}
    assert not optimised & {id(p) for p in model.teacher.parameters()}
    if name in CHECKS:
        CHECKS[name](run)


def test_export_says_which_weights():
    """The export's meta tells an EMA student (the checkpoint has ``ema_state_dict``)
    from a plain one."""
    from mmkd.utils.export import student_checkpoint
    state = {'student.w': torch.ones(1), 'distill_losses.x.w': torch.ones(1)}
    plain = student_checkpoint(dict(state_dict=state, meta={}))
    assert plain['meta']['mmkd_export']['weights'] == 'raw'
    assert list(plain['state_dict']) == ['w']
    ema = student_checkpoint(dict(state_dict=state, ema_state_dict={}, meta={}))
    assert ema['meta']['mmkd_export']['weights'] == 'ema'
