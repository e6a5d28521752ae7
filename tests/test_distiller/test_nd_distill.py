"""ND (KD++) end to end: the class-means tool on the generated data (checked against an
independent recomputation), the file read when training starts, refused when it does
not fit, and the table restored from checkpoints (resume, test time)."""
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement

from helpers import REPO, load_config, load_tool, repo_path, save_random_teachers
from mmkd.apis import class_means as cm_api
from mmkd.apis.class_means import (ClassMeanAccumulator, ClassifierCollector,
                                   write_class_means)
from mmkd.models.recorders import RoIHeadRecorder
from mmkd.utils.class_means import load_class_means, save_class_means

CONFIGS = dict(frcnn='configs/nd/nd_faster_rcnn_r18_r18w16_fpn_synth.py',
               retina='configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py')
NUM_CLASSES = 4


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('nd_ckpts'), seed=7)


def nd_config(det, data_root, work_dir, teacher_ckpt, class_means, max_iters=2,
              val=False):
    cfg = load_config(CONFIGS[det], data_root, work_dir, max_iters=max_iters,
                      **{'model.teacher_ckpt': teacher_ckpt,
                         'model.distill_losses.nd.loss.class_means': class_means})
    cfg.custom_hooks = [dict(type='DistillScheduleHook'), dict(type='StudentExportHook')]
    if not val:
        for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
            cfg[key] = None
    return cfg


def per_class_means(embeddings, labels, rows):
    """float64, one class at a time."""
    emb = torch.cat(embeddings).double()
    lab = torch.cat(labels)
    means = torch.zeros(rows, emb.shape[1], dtype=torch.float64)
    counts = torch.zeros(rows, dtype=torch.long)
    for k in range(rows):
        if (lab == k).any():
            means[k] = emb[lab == k].mean(0)
            counts[k] = (lab == k).sum()
    return means, counts


@pytest.fixture(scope='module')
def frcnn_means(ckpts, tiny_det_data, tmp_path_factory):
    """Run the tool once (3 images: a batch of 2, then a batch cut to 1) and keep what
    the teacher gave on the way."""
    root = tmp_path_factory.mktemp('nd_frcnn_means')
    path = str(root / 'work' / 'class_means.pth')
    cfg = nd_config('frcnn', tiny_det_data, str(root / 'work'), ckpts['frcnn'], path)
    seen = dict(add=[], roi=[], samples=[], teacher=[])
    add, forward_rois = ClassMeanAccumulator.add, RoIHeadRecorder.forward_rois
    call = cm_api.RoICollector.__call__

    def spy_add(self, embeddings, labels):
        seen['add'].append((embeddings.clone(), labels.clone()))
        return add(self, embeddings, labels)

    def spy_roi(self, feats, rois):
        seen['roi'].append((feats, rois))
        return forward_rois(self, feats, rois)

    def spy_call(self, inputs, data_samples):
        seen['samples'].append(data_samples)
        seen['teacher'].append(self.teacher)
        return call(self, inputs, data_samples)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ClassMeanAccumulator, 'add', spy_add)
        mp.setattr(RoIHeadRecorder, 'forward_rois', spy_roi)
        mp.setattr(cm_api.RoICollector, '__call__', spy_call)
        out = write_class_means(cfg, max_images=3, progress=False)
    return dict(path=out, cfg=cfg, **seen)


def test_tool_writes_roi_class_means(frcnn_means, ckpts, tiny_det_data):
    path = frcnn_means['path']
    assert path.endswith(osp.join('work', 'class_means.pth'))  # the config's own path
    means, counts, meta = load_class_means(path)
    assert means.shape == (NUM_CLASSES + 1, 256)  # background row included
    recorded = frcnn_means['add']
    assert [len(s) for s in frcnn_means['samples']] == [2, 1]
    ref, ref_counts = per_class_means([e for e, _ in recorded], [l for _, l in recorded],
                                      NUM_CLASSES + 1)
    assert torch.equal(counts, ref_counts)
    assert counts[NUM_CLASSES] > 0 and counts[:NUM_CLASSES].sum() > 0
    torch.testing.assert_close(means.double(), ref, rtol=1e-6, atol=1e-7)
    assert meta['num_images'] == 3 and meta['includes_background'] is True
    assert meta['num_classes'] == NUM_CLASSES
    assert meta['teacher_checkpoint'] == ckpts['frcnn']
    assert meta['teacher_config'] == 'mmkd::synthetic/faster_rcnn_r18_fpn_teacher_synth.py'
    assert meta['dataset'][0]['ann_file'] == 'annotations/instances_train.json'
    assert meta['dataset'][0]['data_root'].startswith(tiny_det_data)
    assert 'fc_cls input' in meta['feature']


def test_tool_samples_are_the_teachers_roi_features(frcnn_means):
    """Independently of the recorder: the embeddings are ReLU(fc2(ReLU(fc1(RoIAlign))))
    of the teacher on the sampled RoIs, and the labels the IoU >= 0.5 assignment
    (background = 4) of those RoIs to the gt boxes."""
    teacher = frcnn_means['teacher'][0]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    loaded = torch.load(frcnn_means['cfg'].model.teacher_ckpt, weights_only=True)
    for key, value in loaded['state_dict'].items():  # the checkpoint's weights
        assert torch.equal(teacher.state_dict()[key], value), key
    head = teacher.roi_head
    for (emb, labels), (feats, rois), samples in zip(frcnn_means['add'], frcnn_means['roi'],
                                                    frcnn_means['samples']):
        x = head.bbox_roi_extractor(feats[:head.bbox_roi_extractor.num_inputs], rois)
        x = x.flatten(1)
        for fc in head.bbox_head.shared_fcs:
            x = F.relu(fc(x))
        torch.testing.assert_close(emb, x, rtol=1e-5, atol=1e-5)
        expected = torch.full_like(labels, NUM_CLASSES)
        for i, sample in enumerate(samples):
            mine = rois[:, 0] == i
            gt = sample.gt_instances
            iou = bbox_overlaps(rois[mine, 1:], gt.bboxes)
            best, idx = iou.max(dim=1)
            expected[mine] = torch.where(best >= 0.5, gt.labels[idx],
                                         torch.full_like(idx, NUM_CLASSES))
        assert torch.equal(labels, expected)


def test_tool_student_rois_the_authors_recipe(ckpts, tiny_det_data, tmp_path, monkeypatch):
    """``rois='student'``: the teacher's RoI embedding on the RoIs the **student** samples
    (its proposals and sampler, the checkpoint's weights), labelled by their assignment
    (background = 4) — recomputed with an explicit RoIAlign -> FC -> ReLU and IoU
    assignment — and the file's rows are their per-label means."""
    from helpers import save_random_checkpoint
    path = str(tmp_path / 'class_means.pth')
    cfg = nd_config('frcnn', tiny_det_data, str(tmp_path / 'work'), ckpts['frcnn'], path)
    student_ckpt = save_random_checkpoint(cfg.model.student, str(tmp_path / 's.pth'), 3)
    seen, rois_seen = [], []
    from_batch, forward_rois = cm_api.StudentRoICollector.from_batch, \
        RoIHeadRecorder.forward_rois

    def spy_rois(self, feats, rois):  # the teacher's RoI head on the student's RoIs
        if self.owner == 'teacher':
            rois_seen.append(rois)
        return forward_rois(self, feats, rois)

    rpn_calls = []

    def spy(self, data_batch):
        if not seen:  # the teacher's RPN must not run: the RoIs are the student's
            self.distiller.teacher.rpn_head.register_forward_hook(
                lambda *args: rpn_calls.append(1))
        emb, labels = from_batch(self, data_batch)
        seen.append((self.distiller, data_batch, rois_seen[-1], emb, labels))
        return emb, labels

    monkeypatch.setattr(cm_api.StudentRoICollector, 'from_batch', spy)
    monkeypatch.setattr(RoIHeadRecorder, 'forward_rois', spy_rois)
    write_class_means(cfg, max_images=3, progress=False, rois='student',
                      student_checkpoint=student_ckpt)
    means, counts, meta = load_class_means(path)
    assert means.shape == (NUM_CLASSES + 1, 256) and meta['includes_background'] is True
    assert meta['rois'] == 'student' and meta['student_checkpoint'] == student_ckpt
    assert 'the RoIs the student samples' in meta['feature'] and meta['num_images'] == 3
    ref, ref_counts = per_class_means([e for *_, e, _ in seen], [l for *_, l in seen],
                                      NUM_CLASSES + 1)
    assert torch.equal(counts, ref_counts) and counts[NUM_CLASSES] > 0
    torch.testing.assert_close(means.double(), ref, rtol=1e-6, atol=1e-7)

    assert len(seen) == 2 and not rpn_calls
    model = seen[0][0]
    loaded = torch.load(student_ckpt, weights_only=True)['state_dict']
    for key, value in model.student.state_dict().items():  # the checkpoint's student
        assert torch.equal(value, loaded[key]), key
    head = model.teacher.roi_head
    with torch.no_grad():
        for _, data_batch, rois, emb, labels in seen:
            data = model.data_preprocessor(data_batch, True)
            feats = model.teacher.extract_feat(model.teacher_input(data['inputs']))
            x = head.bbox_roi_extractor(feats[:head.bbox_roi_extractor.num_inputs], rois)
            x = x.flatten(1)
            for fc in head.bbox_head.shared_fcs:
                x = F.relu(fc(x))
            torch.testing.assert_close(emb, x, rtol=1e-5, atol=1e-5)
            expected = torch.full_like(labels, NUM_CLASSES)
            for i, sample in enumerate(data['data_samples']):
                mine = rois[:, 0] == i
                gt = sample.gt_instances
                best, idx = bbox_overlaps(rois[mine, 1:], gt.bboxes).max(dim=1)
                expected[mine] = torch.where(best >= 0.5, gt.labels[idx],
                                             torch.full_like(idx, NUM_CLASSES))
            assert torch.equal(labels, expected)

    with pytest.raises(ValueError, match="rois='student' is for ND on RoI embeddings"):
        write_class_means(nd_config('retina', tiny_det_data, str(tmp_path / 'r'),
                                    ckpts['retina'], path), max_images=1, progress=False,
                          rois='student')
    with pytest.raises(ValueError, match="only used with rois='student'"):
        write_class_means(cfg, max_images=1, progress=False, student_checkpoint=student_ckpt)
    args = load_tool('class_means').parse_args(
        ['x.py', '--rois', 'student', '--student-checkpoint', 's.pth'])
    assert (args.rois, args.student_checkpoint) == ('student', 's.pth')


def test_file_trains_and_is_read_at_training_start(frcnn_means, ckpts, tiny_det_data,
                                                    tmp_path):
    cfg = nd_config('frcnn', tiny_det_data, str(tmp_path / 'train'), ckpts['frcnn'],
                    frcnn_means['path'])
    runner = Runner.from_cfg(cfg)
    loss = runner.model.distill_losses['nd'].loss
    assert not loss.normalized_means.any()  # built without reading the file
    runner.train()
    values = runner.message_hub.get_scalar('train/distill.loss_nd').data[0]
    assert len(values) == 2 and all(math.isfinite(float(v)) and v > 0 for v in values)
    kd = runner.message_hub.get_scalar('train/distill.loss_roi_kd').data[0]
    assert len(kd) == 2 and all(math.isfinite(float(v)) for v in kd)
    means = load_class_means(frcnn_means['path'])[0]
    torch.testing.assert_close(loss.normalized_means, F.normalize(means, dim=1))


@pytest.mark.parametrize('case', ['rows', 'missing'])  # width: tests/test_losses
def test_bad_file_refused_at_training_start(case, ckpts, tiny_det_data, tmp_path):
    path = str(tmp_path / 'class_means.pth')
    if case == 'rows':  # e.g. computed without the background row
        save_class_means(path, torch.randn(4, 256), torch.ones(4),
                         dict(includes_background=False))
        message = r"class_means\.pth.*\(4, 256\).*\(5, 256\)"
    else:
        message = r'python tools/class_means\.py CONFIG --out .*class_means\.pth'
    cfg = nd_config('frcnn', tiny_det_data, str(tmp_path / 'train'), ckpts['frcnn'], path)
    runner = Runner.from_cfg(cfg)  # builds (as tools/test.py does) ...
    error = FileNotFoundError if case == 'missing' else ValueError
    with pytest.raises(error, match=message):  # ... and refuses to train
        runner.train()
    assert runner.iter == 0


def test_table_comes_back_from_checkpoints(frcnn_means, ckpts, tiny_det_data, tmp_path):
    path = str(tmp_path / 'class_means.pth')
    means, counts, meta = load_class_means(frcnn_means['path'])
    save_class_means(path, means, counts, meta)
    full = Runner.from_cfg(nd_config('frcnn', tiny_det_data, str(tmp_path / 'full'),
                                     ckpts['frcnn'], path))
    full.train()
    saved = torch.load(tmp_path / 'full' / 'iter_1.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    saved = saved['distill_losses.nd.loss.normalized_means']
    torch.testing.assert_close(saved, F.normalize(means, dim=1))
    # the exported student has no trace of it
    student = torch.load(tmp_path / 'full' / 'iter_2_student.pth', weights_only=True)
    assert not any('normalized_means' in k for k in student['state_dict'])

    # the file changes (regenerated) before the run is resumed: the resumed run ends
    # with the checkpoint's table, not the new file's
    save_class_means(path, torch.randn_like(means), counts, meta)
    cfg = nd_config('frcnn', tiny_det_data, str(tmp_path / 'resumed'), ckpts['frcnn'], path)
    cfg.resume = True
    cfg.load_from = str(tmp_path / 'full' / 'iter_1.pth')
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == 2
    torch.testing.assert_close(resumed.model.distill_losses['nd'].loss.normalized_means,
                               saved)

    # test time: the file does not exist, the checkpoint brings the table
    cfg = nd_config('frcnn', tiny_det_data, str(tmp_path / 'test'), ckpts['frcnn'],
                    str(tmp_path / 'never_written.pth'))
    cfg.load_from = str(tmp_path / 'full' / 'iter_2.pth')
    cfg.model.teacher_ckpt = str(tmp_path / 'no_teacher.pth')
    tester = Runner.from_cfg(cfg)
    metrics = tester.test()
    assert 'coco/bbox_mAP' in metrics
    torch.testing.assert_close(tester.model.distill_losses['nd'].loss.normalized_means,
                               saved)


def test_tool_dense_means_for_retinanet(ckpts, tiny_det_data, tmp_path, monkeypatch):
    """RetinaNet (mmkd's DenseNDLoss): one row per foreground class, the mean of the last
    cls-tower conv over the locations of the positive anchors (once per anchor),
    recomputed here with an explicit tower and an expand-and-mask gather."""
    path = str(tmp_path / 'class_means.pth')
    cfg = nd_config('retina', tiny_det_data, str(tmp_path / 'work'), ckpts['retina'], path)
    seen = []
    call = cm_api.DenseCollector.__call__

    def spy(self, inputs, data_samples):
        seen.append((self.teacher, inputs, data_samples))
        return call(self, inputs, data_samples)

    monkeypatch.setattr(cm_api.DenseCollector, '__call__', spy)
    write_class_means(cfg, max_images=2, progress=False)
    means, counts, meta = load_class_means(path)
    assert means.shape == (NUM_CLASSES, 64) and meta['includes_background'] is False
    assert meta['num_images'] == 2 and counts.sum() > 0

    embeddings, labels = [], []
    with torch.no_grad():
        for teacher, inputs, samples in seen:
            head = teacher.bbox_head
            feats = []
            for level in teacher.extract_feat(inputs):
                for conv in head.cls_convs:
                    level = conv(level)
                feats.append(level)
            anchor_labels = head.get_targets(
                *head.get_anchors([f.shape[-2:] for f in feats],
                                  [s.metainfo for s in samples], device='cpu'),
                [s.gt_instances for s in samples], [s.metainfo for s in samples])[0]
            for f, lab in zip(feats, anchor_labels):
                b, d, h, w = f.shape
                a = lab.shape[1] // (h * w)
                per_anchor = f.permute(0, 2, 3, 1).reshape(b, h * w, 1, d).expand(
                    b, h * w, a, d).reshape(b, h * w * a, d)
                keep = lab < NUM_CLASSES
                embeddings.append(per_anchor[keep])
                labels.append(lab[keep])
    ref, ref_counts = per_class_means(embeddings, labels, NUM_CLASSES)
    assert torch.equal(counts, ref_counts)
    torch.testing.assert_close(means.double(), ref, rtol=1e-5, atol=1e-6)

    # the file feeds DenseNDLoss: 2 iterations train
    cfg = nd_config('retina', tiny_det_data, str(tmp_path / 'train'), ckpts['retina'], path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    values = runner.message_hub.get_scalar('train/distill.loss_nd').data[0]
    assert len(values) == 2 and all(math.isfinite(float(v)) for v in values)


def retina_nd_model_and_batch(teacher_ckpt):
    """The RetinaNet ND distiller (random class means), a two-image training batch, and a
    dict that records every source the losses fetch in ``model.loss``."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(repo_path(CONFIGS['retina']))
    cfg.model.teacher_ckpt = teacher_ckpt
    cfg.model.distill_losses.nd.loss.class_means = torch.randn(NUM_CLASSES, 64)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.manual_seed(0)
    data = model.data_preprocessor(
        demo_mm_inputs(2, [[3, 128, 128], [3, 96, 128]], num_classes=4, num_items=[3, 2]),
        True)
    captured = {}
    original = model._fetch

    def spy(step, source):
        captured[source] = original(step, source)
        return captured[source]

    model._fetch = spy
    return model, data, captured


def test_dense_labels_source_is_the_heads_assignment(ckpts):
    """``dense.labels`` = the student head's own targets: as many positives as its focal
    loss is normalised by (PseudoSampler: avg_factor = number of positive anchors)."""
    model, data, captured = retina_nd_model_and_batch(ckpts['retina'])
    losses = model.loss(**data)
    assert torch.isfinite(losses['distill.loss_nd'])
    labels = captured['dense.labels']
    feats = captured['student.bbox_head.cls_convs.1']
    assert len(labels) == len(feats) == 4
    head = model.student.bbox_head
    for lab, f in zip(labels, feats):
        assert lab.shape == (2, f.shape[-2] * f.shape[-1] * head.num_base_priors)
    samples = data['data_samples']
    targets = head.get_targets(
        *head.get_anchors([f.shape[-2:] for f in feats], [s.metainfo for s in samples],
                          device='cpu'),
        [s.gt_instances for s in samples], [s.metainfo for s in samples])
    assert sum(int((lab < NUM_CLASSES).sum()) for lab in labels) == targets[4] > 0


def test_dense_labels_are_the_student_loss_assignment_not_a_second_one(ckpts):
    """``dense.labels`` is taken from the student head's own ``get_targets`` call in its
    loss (the assigner runs once per step, not twice), and equals a fresh assignment."""
    from mmkd.models.distillers import detection_distiller
    model, data, captured = retina_nd_model_and_batch(ckpts['retina'])
    head = model.student.bbox_head
    calls = []
    assign = head.assigner.assign
    head.assigner.assign = lambda *a, **k: calls.append(1) or assign(*a, **k)
    model.loss(**data)
    assert len(calls) == 2  # once per image, by the student's own loss
    feats = captured['student.bbox_head.cls_convs.1']
    fresh = detection_distiller.dense_anchor_labels(
        head, [f.shape[-2:] for f in feats], data['data_samples'])
    assert len(fresh) == len(captured['dense.labels']) == 4
    for got, want in zip(captured['dense.labels'], fresh):
        assert torch.equal(got, want)


def test_classifier_collector_uses_the_penultimate_feature():
    """The classification branch (mmpretrain ImageClassifier: extract_feat = neck output,
    the fc input), on a stand-in classifier."""

    class Classifier(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 6, 3)
            self.head = nn.Module()
            self.head.num_classes = 3

        def extract_feat(self, inputs):
            return (self.backbone(inputs).mean((2, 3)), )

    teacher = Classifier()
    inputs = torch.randn(4, 3, 8, 8)
    samples = [BaseDataElement(gt_label=torch.tensor([k])) for k in (2, 0, 2, 1)]
    emb, labels = ClassifierCollector(teacher)(inputs, samples)
    torch.testing.assert_close(emb, teacher.backbone(inputs).mean((2, 3)))
    assert labels.tolist() == [2, 0, 2, 1]
    acc = ClassMeanAccumulator(3)
    acc.add(emb, labels)
    means, counts = acc.result()
    assert counts.tolist() == [1, 1, 2]
    torch.testing.assert_close(means[2], emb[[0, 2]].double().mean(0))
    with pytest.raises(ValueError, match=r'labels must be in \[0, 3\)'):
        acc.add(emb, torch.tensor([0, 1, 2, 3]))


def test_cli(ckpts, tiny_det_data, tmp_path):
    out = str(tmp_path / 'means.pth')
    root = tiny_det_data.rstrip('/') + '/'
    args = [sys.executable, 'tools/class_means.py', repo_path(CONFIGS['retina']), '--out',
            out, '--max-images', '2', '--device', 'cpu', '--cfg-options',
            f'model.teacher_ckpt={ckpts["retina"]}',
            f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    means, counts, meta = load_class_means(out)
    assert means.shape == (NUM_CLASSES, 64) and meta['num_images'] == 2
    assert 'written to' in proc.stdout + proc.stderr
    # a config without an ND loss is refused with a one-line message (in-process)
    tool = load_tool('class_means')
    with pytest.raises(SystemExit, match='no distill loss of type NDLoss/DenseNDLoss'):
        tool.main([repo_path('configs/baselines/kd_faster_rcnn_r18_r18w16_fpn_synth.py'),
                   '--out', out])


@pytest.mark.parametrize('rel, num_classes, shape, background', [
    ('configs/nd/nd_faster-rcnn_r101-r50_fpn_1x_coco.py', None, (81, 1024), True),
    ('configs/nd/nd_faster-rcnn_r101-r50_fpn_1x_coco.py', 'dataset', (5, 1024), True),
    ('configs/nd/nd_retinanet_r101-r50_fpn_1x_voc0712.py', 'dataset', (4, 256), False),
])
def test_full_size_harness_gets_a_fitting_class_means_file(rel, num_classes, shape,
                                                          background, tiny_det_data,
                                                          tmp_path):
    from mmkd.testing import tiny_run_config
    cfg = tiny_run_config(Config.fromfile(repo_path(rel)), tiny_det_data,
                          str(tmp_path / 'work'), num_classes=num_classes)
    loss = cfg.model.distill_losses.nd.loss
    assert (loss.num_classes, loss.in_channels) == shape
    means, _, meta = load_class_means(loss.class_means)
    assert tuple(means.shape) == shape and meta['includes_background'] is background
    assert loss.class_means.startswith(str(tmp_path / 'work'))
