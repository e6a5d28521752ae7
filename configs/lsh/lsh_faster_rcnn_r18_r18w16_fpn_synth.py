# LSHFM (LSHL2; Wang, Ge, Wu, TPAMI 2022), CPU-sized: Faster R-CNN R18 teacher -> R18
# (width 16) student on the generated data.
#
# Loss: on the student's sampled RoIs, both RoI heads' classifier input (the 256-d output
# of the two shared FCs after ReLU; the teacher's head runs on the teacher's FPN with the
# student's RoIs) -> beta * (MSE + BCE(W f_s + b, 1[W f_t + b > 0])), beta = 7,
# N = 4 * D = 1024 frozen hashes, b = 0, W ~ N(0, sigma^2) with sigma = std of the
# teacher's fc_cls weight (read after the teacher checkpoint is loaded), averaged over all
# sampled RoIs (foreground and background). Both embeddings are 256-d, so no connector;
# for a student of another width add
#   connectors=dict(student_feat=dict(type='LinearConnector', in_channels=D_s,
#                                     out_channels=256)).
_base_ = ['../synthetic/faster_rcnn_r18w16_fpn_student_synth.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/faster_rcnn_r18_fpn_teacher_synth/iter_1200.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::synthetic/faster_rcnn_r18_fpn_teacher_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        lsh=dict(
            loss=dict(
                type='LSHLoss',
                in_channels=256,
                num_hashes=1024,
                sigma='roi_head.bbox_head.fc_cls.weight',
                bias=0.0,
                with_l2=True,
                loss_weight=7.0),
            inputs=dict(student_feat='student.roi.embedding',
                        teacher_feat='teacher.roi.embedding'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
