# LSHFM (LSHL2; Wang, Ge, Wu, "Distilling Knowledge by Mimicking Features", TPAMI 2022) on
# Pascal VOC 07+12 with the authors' schedule: RetinaNet R101-FPN teacher -> R50-FPN
# student, 24 epochs over VOC07+12 trainval (no RepeatDataset), lr x0.1 after epochs 18
# and 22, multi-scale training (short side drawn from 480, 512, ..., 800; long side
# <= 1333), test at 1333x800, evaluated on VOC2007 test. Published (authors, VOC07 test
# mAP): teacher 83.0, student 82.5, LSHL2 83.0.
#
# Batch and lr: 8 GPUs x 2 images, lr 0.01 with a 500-iteration linear warm-up = the
# authors' 4 GPUs x 2 images, lr 0.005, 1000 warm-up iterations, scaled linearly
# (auto_scale_lr rescales for other batch sizes with --auto-scale-lr).
#
# Teacher: mmdet publishes no R101 VOC weights; train it first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# -> work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below; override
# with --cfg-options model.teacher_ckpt=PATH). That teacher uses mmdet's VOC 1x schedule
# (single scale 1000x600); the authors trained theirs with this config's 24-epoch
# multi-scale schedule.
#
# Loss (DenseLSHLoss): per FPN level P3-P7, the 4-conv classification tower output of both
# heads (bbox_head.cls_convs.3, 256 ch after ReLU), unfolded 3x3 (padding 1) -> 2304-d per
# location, all levels concatenated; images without gt skipped and locations whose 9
# anchors are all in the ignore band (none a low-quality positive) dropped
# (dense.keep_mask): 7 * (MSE + BCE(W f_s, 1[W f_t > 0])), 4096 hashes, b = 0, sigma =
# std of the teacher's retina_cls weight, averaged over kept locations per image, then
# over images. Hash logits in fp32, as a 3x3 convolution over chunks of hash functions
# (see DenseLSHLoss: no unfolded tensors, C-channel maps plus one chunk of logits).
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

# ---------------------------------------------------------------- data (authors' VOC setting)
dataset_type = 'VOCDataset'
data_root = 'data/VOCdevkit/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 480), (1333, 512), (1333, 544), (1333, 576), (1333, 608),
                (1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768),
                (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        ignore_keys=['dataset_type'],
        datasets=[
            dict(
                type=dataset_type,
                data_root=data_root,
                ann_file=f'{year}/ImageSets/Main/trainval.txt',
                data_prefix=dict(sub_data_root=f'{year}/'),
                filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32),
                pipeline=train_pipeline,
                backend_args=backend_args) for year in ('VOC2007', 'VOC2012')
        ]))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# ---------------------------------------------------------------- schedule: 24 epochs, 18/22
max_epochs = 24
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[18, 22],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=3))

# ---------------------------------------------------------------- distillation
teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        lsh=dict(
            loss=dict(
                type='DenseLSHLoss',
                in_channels=9 * 256,
                num_hashes=4096,
                sigma='bbox_head.retina_cls.weight',
                bias=0.0,
                with_l2=True,
                loss_weight=7.0),
            inputs=dict(student_feat='student.bbox_head.cls_convs.3',
                        teacher_feat='teacher.bbox_head.cls_convs.3',
                        mask='dense.keep_mask'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
