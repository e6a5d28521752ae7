# AMD + L2, CPU-sized RetinaNet (R18 teacher -> R18 width-16 student, generated data).
# There is no published detection setting for AMD, and plain L2 (MSE) on the FPN levels is
# the baseline every feature loss has to beat here (0.13 -> ~0.28 mAP in the measured
# calibration). This variant keeps the L2 term and adds AMD on the same levels, so the
# comparison with L2 alone isolates what the angular term adds.
#
# fpn_amd: exactly amd_retinanet_r18_r18w16_fpn_synth.py (P2-P5, global + local, level
#   weight 0.1 * (H*W)^2).
# fpn_l2: FeatureMSELoss on the same levels P2-P5 (= the FitNet baseline's), weight 1 per level, no connector (both
#   FPNs have 64 channels; the plain-L2 calibration used none), padding masked. At the
#   start L2 is ~1-3 per level and its gradient (~9) a bit above AMD's (~6-9).
_base_ = ['./amd_retinanet_r18_r18w16_fpn_synth.py']

model = dict(
    distill_losses=dict(
        fpn_l2=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck',
                        valid_mask='valid_mask'),
            levels=(0, 1, 2, 3))))
