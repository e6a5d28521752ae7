# The distiller of amd_faster-rcnn_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's Faster R-CNN R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (39.4 box AP).
#
# mmkd's own extension: the paper distils classifier stages; there is no published
# detection setting and no detection numbers. Untested at this size -- the weights below
# follow the rule calibrated on the CPU configs (configs/amd/README.md).
#
# Loss: global + local AMD (local_weight=0.2) between the student's and the teacher's FPN
# attention maps, per level, the batch padding masked out (valid_mask).
# Levels P3-P6 (levels 1-4; strides 8-64): maps of at least 4x4 positions (so that every
# local quadrant has >= 2x2; AMD is degenerate on a single position) and at most ~20k.
# P2 (200 x 267 = 53k positions for a 640x480 image) is left out: on maps that large the
# attention is spread (a ~ 1/sqrt(HW) ~ 0.004), the AMD signal is weakest and the (HW)^2
# weight below would amplify any peaked map the most.
# Weights: level weight = loss_weight * (H_l * W_l)^2 with loss_weight (kappa) = 0.1,
# H_l x W_l at the nominal input: the most common COCO image (640x480) resized by the 1x
# pipeline to 1067x800 -> P3 100x134, P4 50x67, P5 25x34, P6 13x17. AMD's value falls as
# 1/(HW)^2 (a per-position mean, and a ~ 1/sqrt(HW)), so (HW)^2 gives every level the same
# share; kappa = 0.1 made the AMD term ~1 at the start on the CPU setting. If you change
# the input scale, scale the weights by (HW ratio)^-2.
# Warm-up: the AMD weight ramps up linearly over the first 500 iterations (mmdet's LR
# warm-up length). The student's FPN starts from random init, where AMD * (HW)^2 is
# 5-9x its value between trained networks (measured on the CPU setting: 2.4-4.0 vs
# 0.3-0.8 per level), and the student configs clip no gradients (mmdet's VOC schedule
# has no LR warm-up either).
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']  # the student
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/'
                'faster_rcnn_r101_fpn_1x_coco/faster_rcnn_r101_fpn_1x_coco_20200130-f513f705.pth')
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        fpn_amd=dict(
            loss=dict(type='AMDLoss', local_weight=0.2, loss_weight=0.1),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck',
                        valid_mask='valid_mask'),
            levels=(1, 2, 3, 4),  # P3-P6
            level_weights=((100 * 134)**2, (50 * 67)**2, (25 * 34)**2, (13 * 17)**2),
            schedule=dict(warmup_iters=500))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
