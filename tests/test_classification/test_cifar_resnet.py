"""The CIFAR ResNets: stage shapes, parameter counts, and equality with the reference
definition (CRD / mdistiller ``models/cifar/resnet.py``)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from mmkd.models.backbones import CIFAR_RESNET_ARCHS, CIFARResNet


def classifier(arch: str, num_classes: int = 100):
    init_default_scope('mmpretrain')
    width = CIFAR_RESNET_ARCHS[arch][2][-1]
    return MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='CIFARResNet', arch=arch),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=width)))


def count_by_formula(depth: int, stem: int, stages, num_classes: int) -> int:
    """Parameters of the reference network, counted layer by layer (conv weights, BN
    weight + bias, 1x1 projection shortcuts where the shape changes, the fc)."""
    n = (depth - 2) // 6
    total = 3 * 9 * stem + 2 * stem
    cin = stem
    for i, c in enumerate(stages):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            total += 9 * cin * c + 2 * c + 9 * c * c + 2 * c
            if stride != 1 or cin != c:
                total += cin * c + 2 * c
            cin = c
    return total + cin * num_classes + num_classes


@pytest.mark.parametrize('arch', sorted(CIFAR_RESNET_ARCHS))
def test_parameter_count_matches_the_layer_by_layer_count(arch):
    depth, stem, stages = CIFAR_RESNET_ARCHS[arch]
    model = classifier(arch)
    assert sum(p.numel() for p in model.parameters()) == \
        count_by_formula(depth, stem, stages, 100)


@pytest.mark.parametrize('arch,num_classes,millions', [
    # He et al. 2016, Table 6 (CIFAR-10)
    ('resnet20', 10, 0.27), ('resnet32', 10, 0.46), ('resnet44', 10, 0.66),
    ('resnet56', 10, 0.85), ('resnet110', 10, 1.7),
    # CRD / mdistiller tables (CIFAR-100)
    ('resnet8x4', 100, 1.23), ('resnet32x4', 100, 7.43),
])
def test_parameter_counts_match_the_literature(arch, num_classes, millions):
    params = sum(p.numel() for p in classifier(arch, num_classes).parameters()) / 1e6
    assert abs(params - millions) / millions < 0.02, params  # the tables' rounding


@pytest.mark.parametrize('arch', ['resnet20', 'resnet8x4'])
def test_stage_shapes(arch):
    _, stem, stages = CIFAR_RESNET_ARCHS[arch]
    backbone = CIFARResNet(arch, out_indices=(0, 1, 2))
    outs = backbone(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (2, stages[0], 32, 32), (2, stages[1], 16, 16), (2, stages[2], 8, 8)]
    assert backbone.out_channels == stages[-1] and backbone.bn1.num_features == stem
    assert len(CIFARResNet(arch)(torch.randn(1, 3, 32, 32))) == 1  # default: last stage


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown arch 'resnet21'"):
        CIFARResNet('resnet21')
    with pytest.raises(ValueError, match='6n \\+ 2'):
        CIFARResNet(dict(depth=21, stem_channels=16, stage_channels=(16, 32, 64)))
    with pytest.raises(ValueError, match='out_indices'):
        CIFARResNet('resnet20', out_indices=(3, ))


class RefBlock(nn.Module):
    """mdistiller's BasicBlock (same module names)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class RefResNet(nn.Module):
    """mdistiller's CIFAR ResNet: ResNet(depth, num_filters, 'basicblock', num_classes)."""

    def __init__(self, depth, num_filters, num_classes=100):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(num_filters[3], num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [RefBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [RefBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


@pytest.mark.parametrize('arch,filters', [('resnet8x4', [32, 64, 128, 256]),
                                          ('resnet20', [16, 16, 32, 64])])
def test_same_network_as_the_reference_definition(arch, filters):
    """A reference checkpoint loads by renaming (``fc`` -> ``head.fc``, the rest under
    ``backbone.``) and gives the same logits, in train and eval mode."""
    torch.manual_seed(0)
    ref = RefResNet(int(arch[6:].split('x')[0]), filters)
    for m in ref.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    ours = classifier(arch)
    state = {('head.' + k if k.startswith('fc.') else 'backbone.' + k): v
             for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(4, 3, 32, 32)
    for train in (False, True):
        ref.train(train)
        ours.train(train)
        torch.testing.assert_close(ours.head(ours.extract_feat(x)), ref(x))
