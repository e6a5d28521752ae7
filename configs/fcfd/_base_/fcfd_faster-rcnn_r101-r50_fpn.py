# The distiller of fcfd_faster-rcnn_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's Faster R-CNN R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (39.4 box AP).
#
# Loss (the authors' defaults: T = 1, every weight 1.0):
# * bridges B_s->t and B_t->s: 3x3 conv (256 -> 256, no bias) + BN, Kaiming init, one per
#   FPN level (B_t->s only on P2-P5, the levels the RoI extractor reads); trained with the
#   student, dropped at export;
# * appearance: sum over P2-P6 of MSE(B_s->t(P_s), P_t);
# * on the student's 512 sampled RoIs per image: for x in {s = the student head on P_s,
#   st = the frozen teacher head on B_s->t(P_s), ts = the student head on B_t->s(P_t)},
#   KL(softmax(z_t) || softmax(z_x)) (sum over the 81 classes, mean over RoIs) + MSE of the
#   class-specific box deltas against the teacher head's on P_t.
# Optional "inherit" (the authors' FCFD-R50-R101-INHERIT): start the student's neck, RPN
# and RoI head from the teacher's, e.g.
#   --cfg-options "model.inherit=[neck,rpn_head,roi_head]"
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
    inherit=None,
    distill_losses=dict(
        fcfd=dict(
            loss=dict(
                type='FCFDRoILoss',
                in_channels=256,
                num_levels=5,
                num_roi_levels=4,
                temperature=1.0,
                app_weight=1.0,
                kl_weight=1.0,
                reg_weight=1.0),
            inputs=dict(
                student_feats='student.neck',
                teacher_feats='teacher.neck',
                rois='roi.rois',
                student_cls='student.roi.cls_score',
                student_reg='student.roi.bbox_pred',
                teacher_cls='teacher.roi.cls_score',
                teacher_reg='teacher.roi.bbox_pred',
                student_roi_forward='student.roi_forward',
                teacher_roi_forward='teacher.roi_forward'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
