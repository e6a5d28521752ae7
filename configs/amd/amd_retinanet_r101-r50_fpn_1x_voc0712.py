# AMD (Jeon, Choi, Shukla, Turaga, "Leveraging Angular Distributions for Improved
# Knowledge Distillation", Neurocomputing 2023) on Pascal VOC 07+12: RetinaNet R101-FPN
# teacher -> RetinaNet R50-FPN student, mmdet's VOC 1x schedule (4 epochs over trainval
# repeated 3x = 12 epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged),
# evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# mmkd's own extension: no published detection setting or numbers; untested at this size.
# Loss: global + local AMD (local_weight=0.2) per FPN level, batch padding masked out.
# Levels P3-P7 (all five), the same rule as the COCO config: every map has at least 4x4
# and at most ~20k positions.
# Weights: loss_weight (kappa) = 0.1 times (H_l * W_l)^2 at the nominal input: the most
# common VOC image (500x375) resized by the VOC pipeline (1000, 600) to 800x600 -> P3
# 75x100, P4 38x50, P5 19x25, P6 10x13, P7 5x7. See configs/amd/README.md for the rule.
# Warm-up: the AMD weight ramps up linearly over the first 500 iterations (mmdet's LR
# warm-up length). The student's FPN starts from random init, where AMD * (HW)^2 is
# 5-9x its value between trained networks (measured on the CPU setting: 2.4-4.0 vs
# 0.3-0.8 per level), and the student configs clip no gradients (mmdet's VOC schedule
# has no LR warm-up either).
#
# The distiller of _base_/amd_retinanet_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher and the loss settings below.
_base_ = [
    './_base_/amd_retinanet_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(bbox_head=dict(num_classes=20)),
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    distill_losses=dict(fpn_amd=dict(
        # (H_l * W_l)^2 at the VOC pipeline's 800x600 (P3-P7), see the header
        level_weights=((75 * 100)**2, (38 * 50)**2, (19 * 25)**2, (10 * 13)**2,
                       (5 * 7)**2))),
    teacher_ckpt=teacher_ckpt)
