# LSHFM (LSHL2; Wang, Ge, Wu, "Distilling Knowledge by Mimicking Features", TPAMI 2022)
# between two Faster R-CNN FPN detectors: the distiller shared by this directory's COCO
# and VOC configs, which add the data, schedule and runtime bases (and, for VOC, swap the
# teacher and the class count). As written here: mmdet's R50-FPN student as mmdet ships
# it (80 classes) and the COCO model-zoo R101-FPN teacher (39.4 box AP).
#
# Loss: on the student's 512 sampled RoIs per image, the 1024-d classifier input of both
# RoI heads (output of the two shared FCs after ReLU; the teacher's RoI extractor and
# shared FCs run on the teacher's FPN with the student's RoIs):
#   beta * (MSE(f_s, f_t) + BCE(W f_s + b, 1[W f_t + b > 0])),
# beta = 7, N = 4 * 1024 = 4096 frozen hashes, b = 0, W ~ N(0, sigma^2) with sigma = std of
# the teacher's fc_cls weight (taken after the teacher checkpoint is loaded), averaged over
# all sampled RoIs (foreground and background). Hash logits are computed in fp32.
# Both embeddings are 1024-d, so no connector; for a student with another fc width add
#   connectors=dict(student_feat=dict(type='LinearConnector', in_channels=D_s,
#                                     out_channels=1024)).
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
        lsh=dict(
            loss=dict(
                type='LSHLoss',
                in_channels=1024,
                num_hashes=4096,
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
