# The distiller of kd_faster-rcnn_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's Faster R-CNN R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (39.4 box AP).
#
# Loss: KL(softmax(z_t / T) || softmax(z_s / T)) * T^2 between the RoI classifiers'
# 81-way logits, both heads run on the student's 512 sampled RoIs per image (the teacher's
# RoI head is fed the student's RoIs on the teacher's FPN features). T = 1, batchmean
# (sum over classes, mean over RoIs), loss_weight = 1.0: the same scale as the student's
# own cross-entropy loss_cls.
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
        roi_kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, mode='softmax', loss_weight=1.0),
            inputs=dict(student_logits='student.roi.cls_score',
                        teacher_logits='teacher.roi.cls_score'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
