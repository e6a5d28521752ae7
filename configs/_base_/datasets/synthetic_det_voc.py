# The generated detection dataset in its VOC layout, read by mmdet's stock VOCDataset and
# evaluated with VOC mAP (VOCMetric, 11-point AP at IoU 0.5). The folder is VOCdevkit/SYNTH,
# not VOC2007, so that VOCMetric reports our class names rather than VOC's.
_base_ = ['./synthetic_det_coco.py']

dataset_type = 'VOCDataset'
data_root = 'data/synthetic_det/VOCdevkit/'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        metainfo={{_base_.metainfo}},
        ann_file='SYNTH/ImageSets/Main/trainval.txt',
        data_prefix=dict(sub_data_root='SYNTH/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=1, bbox_min_size=1),
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        metainfo={{_base_.metainfo}},
        ann_file='SYNTH/ImageSets/Main/test.txt',
        data_prefix=dict(sub_data_root='SYNTH/'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader

val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP', eval_mode='11points')  # VOC07-style 11-point AP
test_evaluator = val_evaluator
