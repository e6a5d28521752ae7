"""The opt-in teacher cache (``teacher_cache=dict(max_mib=...)``): images seen before are
answered from memory, the teacher runs on the unseen ones only, and every distill loss
equals the uncached distiller's (float rounding of the sub-batch's kernels)."""
import copy

import pytest
import torch
from helpers import detection_batch, repo_path, save_random_teachers
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmkd.models.distillers.teacher_cache import TeacherOutputCache, build_teacher_cache

#: every kind of teacher source: FPN (L2), dense-head logits (KD), the cls tower (LSH),
#: dense ND (tower + labels), FCFD's teacher head on bridged student features
RETINA = {
    'fitnet': 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py',
    'kd++': 'configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py',
    'lsh': 'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py',
    'fcfd': 'configs/fcfd/fcfd_retinanet_r18_r18w16_fpn_synth.py',
}
#: the teacher's RoI head runs on the student's RoIs over the cached FPN features
FRCNN = {
    'lsh': 'configs/lsh/lsh_faster_rcnn_r18_r18w16_fpn_synth.py',
    'fcfd': 'configs/fcfd/fcfd_faster_rcnn_r18_r18w16_fpn_synth.py',
}


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('teachers'), seed=5)


@pytest.fixture(scope='module')
def class_means(tmp_path_factory):
    from mmkd.utils import save_class_means
    path = str(tmp_path_factory.mktemp('means') / 'means.pth')
    save_class_means(path, torch.randn(4, 64, generator=torch.Generator().manual_seed(0)),
                     torch.ones(4, dtype=torch.long), dict(num_classes=4))
    return path


def build(config: str, teacher_ckpt: str, means: str, teacher_cache=None):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = copy.deepcopy(Config.fromfile(repo_path(config)).model)
    cfg.teacher_ckpt = teacher_ckpt
    cfg.teacher_cache = teacher_cache
    for binding in cfg.distill_losses.values():
        if 'class_means' in binding.loss:
            binding.loss.class_means = means
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    return model


def batch_of(model, images):
    """A batch of two of four distinct images (``detection_batch``'s boxes, image ``i``
    normalised noise drawn from seed ``i``)."""
    samples = detection_batch(model)['data_samples']
    pool = [torch.randn(3, 128, 128, generator=torch.Generator().manual_seed(i))
            for i in range(4)]
    return (torch.stack([pool[i] for i in images]),
            [copy.deepcopy(samples[j]) for j in range(len(images))])


def distill_losses(model, inputs, data_samples):
    torch.manual_seed(0)  # the same RoI sampling for both distillers
    losses = model.loss(inputs, data_samples)
    return {k: v for k, v in losses.items() if k.startswith('distill.loss_')}


def count_teacher_images(model):
    seen = []
    model.teacher.backbone.register_forward_hook(
        lambda module, args, out: seen.append(args[0].size(0)))
    return seen


@pytest.mark.parametrize('detector,method', [('retina', m) for m in RETINA] +
                         [('frcnn', m) for m in FRCNN])
def test_cached_teacher_gives_the_uncached_losses_and_runs_only_unseen_images(
        teachers, class_means, detector, method):
    config = (RETINA if detector == 'retina' else FRCNN)[method]
    plain = build(config, teachers[detector], class_means)
    cached = build(config, teachers[detector], class_means, dict(max_mib=64))
    cached.load_state_dict(plain.state_dict())
    runs = count_teacher_images(cached)
    # first batch: both images new; second: one seen (image 1), one new (image 2), in
    # another position of the batch; third: both seen
    for images, teacher_images in (([0, 1], 2), ([2, 1], 1), ([1, 0], 0)):
        inputs, samples = batch_of(plain, images)
        runs.clear()
        expected = distill_losses(plain, inputs, copy.deepcopy(samples))
        got = distill_losses(cached, inputs, copy.deepcopy(samples))
        assert sum(runs) == teacher_images, images
        assert set(got) == set(expected)
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6,
                                       msg=f'{name} on images {images}')
    assert (cached.teacher_cache.hits, cached.teacher_cache.misses) == (3, 3)
    assert cached.teacher_cache.stats().startswith(
        'teacher cache: 3/6 images answered from the cache (50 %), 3 kept in')
    # the gradients reach the student as without the cache
    loss = sum(v for k, v in got.items() if k.count('.') == 1)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in cached.student.parameters())
    assert all(p.grad is None for p in cached.teacher.parameters())


def test_a_full_cache_keeps_what_it_has_and_runs_the_teacher_for_the_rest(teachers,
                                                                         class_means):
    model = build(RETINA['fitnet'], teachers['retina'], class_means, dict(max_mib=64))
    inputs, samples = batch_of(model, [0, 1])
    model.teacher_cache.max_bytes = 1  # nothing fits
    distill_losses(model, inputs, samples)
    distill_losses(model, inputs, copy.deepcopy(samples))
    assert (model.teacher_cache.hits, model.teacher_cache.misses) == (0, 4)
    assert model.teacher_cache.entries == {} and model.teacher_cache.bytes == 0


def test_the_key_tells_images_apart_by_every_byte_and_by_shape():
    image = torch.rand(3, 8, 8)
    other = image.clone()
    other[2, 7, 7] += 1e-6
    key = TeacherOutputCache.key
    assert key(image) == key(image.clone())
    assert key(image) != key(other)
    assert key(image) != key(image.reshape(3, 4, 16))


def test_bad_cache_configs_and_non_per_image_outputs_say_what_to_fix():
    with pytest.raises(ValueError, match='max_mib must be a positive'):
        build_teacher_cache(dict(max_mib=0))
    with pytest.raises(ValueError, match="unknown option.*'size'.*max_mib and dir"):
        build_teacher_cache(dict(size=3))
    with pytest.raises(ValueError, match='must be None, True or a dict'):
        build_teacher_cache('yes')
    with pytest.raises(ValueError, match='dir must be a directory path'):
        build_teacher_cache(dict(dir=''))
    assert build_teacher_cache(None) is None
    assert isinstance(build_teacher_cache(True), TeacherOutputCache)
    cache = TeacherOutputCache(max_mib=1)
    with pytest.raises(ValueError, match='not one row per image.*remove teacher_cache'):
        cache(torch.rand(2, 3, 4, 4), lambda x: ((torch.rand(3, 5), ), {}))


def test_nested_outputs_keep_their_types_namedtuples_included():
    """Per-image rows and the reassembled batch keep tuples, lists, dicts and namedtuples
    (a head may return one) as they were."""
    from collections import namedtuple
    Pair = namedtuple('Pair', 'cls reg')
    batch = torch.arange(24.).view(4, 6)
    calls = []

    def teacher(x):
        calls.append(x.size(0))
        out = (Pair(x * 2, [x + 1]), {'t': x - 1})
        return out, {'head': [out]}

    cache = TeacherOutputCache(max_mib=1)
    cache(batch[:2], teacher)
    feats, records = cache(batch[[1, 2]], teacher)
    assert calls == [2, 1]
    assert isinstance(feats[0], Pair) and isinstance(feats[0].reg, list)
    torch.testing.assert_close(feats[0].cls, batch[[1, 2]] * 2)
    torch.testing.assert_close(feats[0].reg[0], batch[[1, 2]] + 1)
    torch.testing.assert_close(feats[1]['t'], batch[[1, 2]] - 1)
    assert isinstance(records['head'][0][0], Pair)
    torch.testing.assert_close(records['head'][0][0].cls, batch[[1, 2]] * 2)


def test_runs_sharing_a_cache_dir_read_each_others_teacher_outputs_bit_for_bit(
        teachers, class_means, tmp_path):
    """The second run (a fresh distiller, as a new process would build) never runs the
    teacher on the images the first one wrote, and gets the same losses, bit for bit; a
    run whose teacher differs (other weights) or records other outputs shares nothing."""
    shared = dict(max_mib=64, dir=str(tmp_path / 'teacher_cache'))
    first = build(RETINA['fitnet'], teachers['retina'], class_means, shared)
    second = build(RETINA['fitnet'], teachers['retina'], class_means, shared)
    second.load_state_dict(first.state_dict())
    runs = count_teacher_images(second)
    for images in ([0, 1], [2, 1]):
        inputs, samples = batch_of(first, images)
        expected = distill_losses(first, inputs, copy.deepcopy(samples))
        runs.clear()
        got = distill_losses(second, inputs, copy.deepcopy(samples))
        assert runs == [], images
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert torch.equal(got[name], value), name
    assert (first.teacher_cache.hits, first.teacher_cache.misses) == (1, 3)
    assert (second.teacher_cache.hits, second.teacher_cache.disk_hits) == (4, 3)
    assert 'of them from' in second.teacher_cache.stats()
    namespace = first.teacher_cache.namespace
    assert len(list((tmp_path / 'teacher_cache' / namespace).glob('*.pt'))) == 3
    assert second.teacher_cache.namespace == namespace

    other_teacher = build(RETINA['fitnet'], teachers['retina'], class_means, shared)
    with torch.no_grad():
        next(iter(other_teacher.teacher.parameters())).add_(1e-3)
    other_outputs = build(RETINA['kd++'], teachers['retina'], class_means, shared)
    for model in (other_teacher, other_outputs):
        inputs, samples = batch_of(model, [0, 1])
        distill_losses(model, inputs, samples)
        assert model.teacher_cache.namespace != namespace
        assert (model.teacher_cache.hits, model.teacher_cache.misses) == (0, 2)


def test_an_unreadable_cache_file_is_computed_again_and_rewritten(teachers, class_means,
                                                                  tmp_path):
    shared = dict(max_mib=64, dir=str(tmp_path))
    first = build(RETINA['fitnet'], teachers['retina'], class_means, shared)
    inputs, samples = batch_of(first, [0, 1])
    expected = distill_losses(first, inputs, copy.deepcopy(samples))
    files = sorted((tmp_path / first.teacher_cache.namespace).glob('*.pt'))
    files[0].write_bytes(files[0].read_bytes()[:100])  # a truncated write
    second = build(RETINA['fitnet'], teachers['retina'], class_means, shared)
    second.load_state_dict(first.state_dict())
    runs = count_teacher_images(second)
    got = distill_losses(second, inputs, copy.deepcopy(samples))
    assert runs == [1] and second.teacher_cache.disk_hits == 1
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6)
    assert all(TeacherOutputCache.key(image) in second.teacher_cache.entries
               for image in inputs)
    assert len(list((tmp_path / first.teacher_cache.namespace).glob('*.tmp'))) == 0
    third = build(RETINA['fitnet'], teachers['retina'], class_means, shared)
    third.load_state_dict(first.state_dict())
    distill_losses(third, inputs, copy.deepcopy(samples))
    assert third.teacher_cache.disk_hits == 2  # the rewritten file reads now
