# The distiller of kd_retinanet_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's RetinaNet R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (38.5 box AP).
#
# Loss: RetinaNet classifies with 80 independent sigmoids per anchor, so KD is the binary
# KL between sigmoid(z_t / T) and sigmoid(z_s / T) of every anchor x class logit of the
# dense head, on each of the 5 FPN levels (P3-P7), summed over levels. T = 1.
# KDLoss(mode='sigmoid') averages the binary KL over all anchor x class elements; with
# loss_weight = num_classes (80) that becomes a sum over classes and a mean over anchor
# positions, the reduction of Hinton's softmax KD (sum over classes, mean over samples).
# Even so the term stays small next to the focal loss (which is divided by the number
# of positive anchors, not of all anchors); raise it if the KD term is negligible.
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']  # the student
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
                'retinanet_r101_fpn_1x_coco/retinanet_r101_fpn_1x_coco_20200130-7a93545f.pth')
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmdet::retinanet/retinanet_r101_fpn_1x_coco.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
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
