# mmdet's RetinaNet 1x COCO schedule (mmdet::retinanet/retinanet_r50_fpn_1x_coco.py):
# mmdet's schedule_1x (12 epochs, lr x0.1 after epochs 8 and 11, 500-iteration warm-up)
# with SGD lr 0.01 for 8 GPUs x 2 images.
_base_ = ['mmdet::_base_/schedules/schedule_1x.py']
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
