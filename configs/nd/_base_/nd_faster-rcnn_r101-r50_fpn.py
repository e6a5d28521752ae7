# The distiller of nd_faster-rcnn_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's Faster R-CNN R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (39.4 box AP).
#
# * ND on the 1024-d RoI classifier input (fc7, after the shared FCs) of the student's
#   512 sampled RoIs per image, computed by both RoI heads (the teacher's on its own FPN
#   features with the student's RoIs), labels = the RoIs' assigned labels, background
#   included: 80 classes + background = 81 rows of teacher class means. Weight 1.0
#   (the authors' value for R101 -> R50; 1.5 for R101 -> R18).
# * KD on the RoI classifiers' 81-way logits: T = 1, weight 1.0 (no warm-up: the KD
#   warm-up is the classification recipe's).
#
# Two steps. First the class means (frozen teacher over train2017; one pass, about as
# long as a teacher inference over 118k images; --max-images N for a subset):
#   python tools/class_means.py configs/nd/nd_faster-rcnn_r101-r50_fpn_1x_coco.py
#   (writes class_means below; --out PATH elsewhere, then
#    --cfg-options model.distill_losses.nd.loss.class_means=PATH when training)
# then train:
#   bash tools/dist_train.sh configs/nd/nd_faster-rcnn_r101-r50_fpn_1x_coco.py 8
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']  # the student
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/'
                'faster_rcnn_r101_fpn_1x_coco/faster_rcnn_r101_fpn_1x_coco_20200130-f513f705.pth')
class_means = 'work_dirs/nd_faster-rcnn_r101-r50_fpn_1x_coco/class_means.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(type='NDLoss', class_means=class_means, num_classes=81,
                      in_channels=1024, loss_weight=1.0),
            inputs=dict(student_emb='student.roi.embedding',
                        teacher_emb='teacher.roi.embedding', labels='roi.labels')),
        roi_kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, mode='softmax', loss_weight=1.0),
            inputs=dict(student_logits='student.roi.cls_score',
                        teacher_logits='teacher.roi.cls_score'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
