# FitNet (Romero et al., 2015) baseline on COCO: RetinaNet R101-FPN teacher (mmdet model
# zoo, 38.5 box AP) -> RetinaNet R50-FPN student, 1x schedule (12 epochs, 8 GPUs x 2
# images, the student's own mmdet config unchanged).
#
# Loss: on each of the 5 FPN levels (P3-P7), a 3x3 conv regressor (ConvConnector,
# 256 -> 256, one per level, the FitNet "hint" regressor) maps the student feature onto the
# teacher's and the MSE between them is minimised, averaged over channels and real pixels
# (the batch padding is masked out). loss_weight = 1.0 per level: the per-element MSE of FPN
# features is O(0.1-1) at the start, the same order as the detector's own losses, and it
# decays quickly as the regressor fits; tune in [0.5, 2] if it dominates.
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
        fpn_fitnet=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck',
                        valid_mask='valid_mask'),
            levels=(0, 1, 2, 3, 4),
            connectors=dict(student_feat=dict(type='ConvConnector', in_channels=256,
                                              out_channels=256)))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
