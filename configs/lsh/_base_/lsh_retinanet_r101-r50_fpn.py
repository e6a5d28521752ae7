# The distiller of lsh_retinanet_r101-r50_fpn_{1x_coco,2x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's RetinaNet R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (38.5 box AP).
#
# Loss (DenseLSHLoss): on each FPN level P3-P7, the output of the 4-conv classification
# tower of both heads (bbox_head.cls_convs.3: 256 channels after ReLU), unfolded 3x3 with
# padding 1 -> 2304-d per location, the locations of all levels concatenated; as the
# authors, images without gt are skipped and locations whose 9 anchors are all in the
# assigner's ignore band (IoU in [0.4, 0.5)), none a low-quality positive match, are
# dropped (dense.keep_mask). beta * (MSE + BCE(W f_s + b, 1[W f_t + b > 0])), beta = 7,
# N = 4096 hashes (the authors' RetinaNet setting), b = 0, sigma = std of the teacher's
# retina_cls weight; averaged over the kept locations of each image, then over the images
# with at least one. Hash logits are fp32 (mmkd's precaution; the authors' NaN remark is
# about plain LSH without the L2 term on RetinaNet, not about precision).
#
# Cost: ~22.4k locations per 1333x800 image, 44.8k per GPU. DenseLSHLoss never unfolds: the
# hash logits are a 3x3 convolution of the 256-channel tower with the 4096 hash functions,
# run over chunks of hash functions with the student's gradient computed on the spot, so
# the loss holds C-channel maps and one chunk of logits (~0.15 GB), and costs three
# [locations x 2304] x [2304 x 4096] products per step. loss.hash_dtype='bf16' (or 'tf32'
# on Ampere and newer GPUs) runs those products in lower precision (see README.md).
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
        lsh=dict(
            loss=dict(
                type='DenseLSHLoss',
                in_channels=9 * 256,
                num_hashes=4096,
                sigma='bbox_head.retina_cls.weight',
                bias=0.0,
                with_l2=True,
                loss_weight=7.0),
            inputs=dict(student_feat='student.bbox_head.cls_convs.3',
                        teacher_feat='teacher.bbox_head.cls_convs.3',
                        mask='dense.keep_mask'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
