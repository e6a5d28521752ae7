# The distiller of fcfd_retinanet_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's RetinaNet R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (38.5 box AP).
#
# Loss: the "later layers" are the dense head (cls/reg towers + predictors), which reads
# every FPN level, so both bridges (3x3 conv 256 -> 256 + BN) exist on each of P3-P7:
# * appearance: sum over levels of MSE(B_s->t(P_s), P_t), weight 1.0;
# * for x in {s = the student head on P_s, st = the frozen teacher head on B_s->t(P_s),
#   ts = the student head on B_t->s(P_t)}: binary (sigmoid) KL per anchor x class against
#   the teacher head on P_t (T = 1), a mean over anchor x class elements per level, with
#   kl_weight = num_classes (80): a sum over classes and a mean over anchor positions, as
#   in the KD baseline; + MSE of every anchor's deltas (weight 1.0); summed over levels.
# Every location counts (no mask, as FCFD's RoI loss counts background RoIs). To restrict
# the KL/MSE to "foreground-ish" locations set loss.score_thr (teacher's max class
# probability at the location), or wire inputs.mask='dense.keep_mask'.
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
        fcfd=dict(
            loss=dict(
                type='FCFDDenseLoss',
                in_channels=256,
                num_levels=5,
                temperature=1.0,
                app_weight=1.0,
                kl_weight=80.0,
                reg_weight=1.0,
                score_thr=None),
            inputs=dict(
                student_feats='student.neck',
                teacher_feats='teacher.neck',
                student_cls='student.dense.cls_score',
                student_reg='student.dense.bbox_pred',
                teacher_cls='teacher.dense.cls_score',
                teacher_reg='teacher.dense.bbox_pred',
                student_dense_forward='student.dense_forward',
                teacher_dense_forward='teacher.dense_forward'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
