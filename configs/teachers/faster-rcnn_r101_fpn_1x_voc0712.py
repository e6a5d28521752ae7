# Teacher for the Pascal VOC Faster R-CNN baselines (mmdet ships no R101 VOC model):
# mmdet's Faster R-CNN R50-FPN VOC07+12 config with a ResNet-101 backbone (ImageNet
# init from torchvision). Same schedule: 4 epochs over VOC07+12 trainval repeated 3x
# (= 12 epochs), so the last checkpoint is epoch_4.pth. Train it first:
#   bash tools/dist_train.sh configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py 8
#   (or: python tools/train.py configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py)
# -> work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth
_base_ = ['mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py']
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
