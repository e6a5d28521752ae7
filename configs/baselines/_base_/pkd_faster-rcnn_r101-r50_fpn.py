# The distiller of pkd_faster-rcnn_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's Faster R-CNN R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (39.4 box AP).
#
# Loss (PKDLoss, as MMRazor's PKD): on the first four FPN levels (P2-P5), each
# feature map is normalised per channel to zero mean and unit std (statistics over
# the batch and all positions) and half the MSE of the normalised student and
# teacher maps is minimised: 1 - Pearson correlation per channel, so the features'
# magnitude no longer matters. loss_weight = 6 per level (MMRazor's Faster R-CNN config).
# No connector (both FPNs have 256 channels); the batch padding is not masked, as in
# MMRazor (add valid_mask='valid_mask' to the inputs to mask it).
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
        fpn_pkd=dict(
            loss=dict(type='PKDLoss', loss_weight=6.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
            levels=(0, 1, 2, 3))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
