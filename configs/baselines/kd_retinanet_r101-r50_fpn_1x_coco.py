# KD (Hinton et al., 2015) baseline on COCO, sigmoid form for a dense detector: RetinaNet
# R101-FPN teacher (mmdet model zoo, 38.5 box AP) -> RetinaNet R50-FPN student, 1x schedule
# (12 epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged).
#
# Loss: RetinaNet classifies with 80 independent sigmoids per anchor, so KD is the binary
# KL between sigmoid(z_t / T) and sigmoid(z_s / T) of every anchor x class logit of the
# dense head, on each of the 5 FPN levels (P3-P7), summed over levels. T = 1.
# KDLoss(mode='sigmoid') averages the binary KL over all anchor x class elements; with
# loss_weight = num_classes (80) that becomes a sum over classes and a mean over anchor
# positions, the reduction of Hinton's softmax KD (sum over classes, mean over samples).
# Even so the term stays small next to the focal loss (which is divided by the number
# of positive anchors, not of all anchors); raise it if the KD term is negligible.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
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
