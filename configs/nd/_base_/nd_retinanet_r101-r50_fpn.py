# The distiller of nd_retinanet_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's RetinaNet R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (38.5 box AP).
#
# The ND paper (Wang et al., ECCV 2024) applies ND to Faster R-CNN only; this dense-head
# mapping is mmkd's own extension, with no published result:
# * DenseNDLoss: every positive anchor (RetinaNet's own MaxIoU assigner, `dense.labels`)
#   is a sample; its feature is the 256-d output of the last cls-tower conv (after ReLU)
#   at the anchor's location, on P3-P7, for student and teacher; its label the assigned
#   class. The teacher class means have 80 rows (foreground only: the ~10^5 negative
#   locations per image are not pulled anywhere). Mean over the positive anchors of the
#   batch, weight 1.0 (O(1) at the start, like the focal loss, which is also normalised
#   by the number of positives).
# * KD: sigmoid (binary) KD on the class logits, T = 1, weight 80, as the KD baseline
#   (configs/baselines/kd_retinanet_r101-r50_fpn_1x_coco.py).
#
# Two steps: the class means first (frozen teacher over train2017, --max-images N for a
# subset):
#   python tools/class_means.py configs/nd/nd_retinanet_r101-r50_fpn_1x_coco.py
#   (writes class_means below)
# then train:
#   bash tools/dist_train.sh configs/nd/nd_retinanet_r101-r50_fpn_1x_coco.py 8
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']  # the student
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
                'retinanet_r101_fpn_1x_coco/retinanet_r101_fpn_1x_coco_20200130-7a93545f.pth')
class_means = 'work_dirs/nd_retinanet_r101-r50_fpn_1x_coco/class_means.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmdet::retinanet/retinanet_r101_fpn_1x_coco.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(type='DenseNDLoss', class_means=class_means, num_classes=80,
                      in_channels=256, loss_weight=1.0),
            inputs=dict(student_feats='student.bbox_head.cls_convs.3',
                        teacher_feats='teacher.bbox_head.cls_convs.3',
                        anchor_labels='dense.labels')),
        dense_kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, mode='sigmoid', loss_weight=80.0),
            inputs=dict(student_logits='student.dense.cls_score',
                        teacher_logits='teacher.dense.cls_score'),
            levels=(0, 1, 2, 3, 4))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
