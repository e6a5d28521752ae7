# CIFAR ResNet (He et al. 2016; as CRD / mdistiller define it): 3x3 stem, three stages of
# BasicBlocks, global average pooling, a linear classifier. Set the arch and the
# classifier's in_channels (the last stage width) together.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CIFARResNet', arch='resnet20'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
