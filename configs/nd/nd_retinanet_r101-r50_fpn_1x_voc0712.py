# ND / KD++ on RetinaNet, Pascal VOC 07+12: RetinaNet R101-FPN teacher -> RetinaNet
# R50-FPN student, mmdet's VOC 1x schedule (4 epochs over trainval repeated 3x = 12
# epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged), evaluated on
# VOC2007 test. mmkd's own dense-head extension of ND (no published result), as in
# nd_retinanet_r101-r50_fpn_1x_coco.py: DenseNDLoss (weight 1.0) on the last cls-tower
# conv at the positive anchors' locations against the teacher's 20 foreground class
# means + sigmoid KD on the class logits (T = 1, weight 20 = num_classes).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below).
# Then the class means (one pass of the frozen teacher over VOC07+12 trainval):
#   python tools/class_means.py configs/nd/nd_retinanet_r101-r50_fpn_1x_voc0712.py
#   (writes class_means below)
# and train:
#   bash tools/dist_train.sh configs/nd/nd_retinanet_r101-r50_fpn_1x_voc0712.py 8
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
class_means = 'work_dirs/nd_retinanet_r101-r50_fpn_1x_voc0712/class_means.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(type='DenseNDLoss', class_means=class_means, num_classes=20,
                      in_channels=256, loss_weight=1.0),
            inputs=dict(student_feats='student.bbox_head.cls_convs.3',
                        teacher_feats='teacher.bbox_head.cls_convs.3',
                        anchor_labels='dense.labels')),
        dense_kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, mode='sigmoid', loss_weight=20.0),
            inputs=dict(student_logits='student.dense.cls_score',
                        teacher_logits='teacher.dense.cls_score'),
            levels=(0, 1, 2, 3, 4))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
