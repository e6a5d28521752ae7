"""tools/benchmark.py's measurement: the variants run and are timed, config variants are
built with the same weights, goals per row, sections of the docs file, flat memory."""
import os.path as osp

import pytest
import torch

from helpers import REPO, load_tool
from mmkd.apis.benchmark import (BUILTIN_VARIANTS, VARIANTS, Goal,
                                 build_variants, goals_for, load_config, overhead,
                                 parse_variant, peak_memory, rss_over_iterations,
                                 time_variants)

FITNET = osp.join(REPO, 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py')
LSH = osp.join(REPO, 'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py')
FCFD_FRCNN = osp.join(REPO, 'configs/fcfd/fcfd_faster_rcnn_r18_r18w16_fpn_synth.py')
FCFD_RETINA = osp.join(REPO, 'configs/fcfd/fcfd_retinanet_r18_r18w16_fpn_synth.py')


@pytest.mark.parametrize('config', [
    'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py',
    'configs/nd/nd_faster_rcnn_r18_r18w16_fpn_synth.py',  # RoI sources + a class table
])
def test_time_variants(config):
    times = time_variants(osp.join(REPO, config), steps=1, batch_size=2, img_size=64)
    assert set(times) == set(VARIANTS)
    assert all(t > 0 for t in times.values())
    # the distilled step runs the student's step and more
    assert times['distill'] > 0.5 * times['student']


def test_a_config_variant_is_timed_next_to_the_plain_config_with_the_same_weights():
    variants = {'w2': {'model.distill_losses.fpn_l2.loss.loss_weight': 2.0}}
    models = build_variants(FITNET, 'cpu', variants=variants)
    other = models['variants']['w2']
    assert other.distill_losses['fpn_l2'].loss.loss_weight == 2.0
    assert models['distiller'].distill_losses['fpn_l2'].loss.loss_weight != 2.0
    for key, value in models['distiller'].state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    for key, value in models['distiller'].teacher.state_dict().items():
        assert torch.equal(value, other.teacher.state_dict()[key]), key

    times = time_variants(FITNET, steps=1, batch_size=2, img_size=(64, 96),
                          variants=variants)
    assert set(times) == set(VARIANTS) | {'teacher:w2', 'distill:w2'}
    assert overhead(times, 'w2') == times['distill:w2'] / (times['student'] + times['teacher'])


def test_parse_variant_and_where_it_applies():
    variant = parse_variant('lsh_bf16:model.distill_losses.lsh.loss.hash_dtype=bf16,'
                            'model.distill_losses.lsh.loss.num_hashes=512')
    assert variant.name == 'lsh_bf16'
    assert variant.options == {'model.distill_losses.lsh.loss.hash_dtype': 'bf16',
                               'model.distill_losses.lsh.loss.num_hashes': 512}
    assert variant.options_for(load_config(LSH)) == variant.options
    assert variant.options_for(load_config(FITNET)) is None  # no 'lsh' loss there
    assert parse_variant('hash_bf16') is BUILTIN_VARIANTS['hash_bf16']
    for bad, match in [('x:model.a', 'is not key=value'), (':a=1', 'name before'),
                       ('nonsense', 'built-in variants')]:
        with pytest.raises(ValueError, match=match):
            parse_variant(bad)


def test_builtin_variants_apply_where_they_make_sense():
    hash_bf16 = BUILTIN_VARIANTS['hash_bf16']
    assert hash_bf16.options_for(load_config(LSH)) == {
        'model.distill_losses.lsh.loss.hash_dtype': 'bf16'}
    assert hash_bf16.options_for(load_config(FCFD_FRCNN)) is None
    teacher = BUILTIN_VARIANTS['teacher_bf16'].options_for(load_config(FITNET))
    assert teacher == {'model.teacher_dtype': 'bf16'}


@pytest.mark.parametrize('config, options, device, full, expected', [
    (LSH, {}, 'cpu', False, [Goal('overhead', 2.0)]),
    (LSH, {'model.distill_losses.lsh.loss.hash_dtype': 'bf16'}, 'cpu', False,
     [Goal('overhead', 1.5)]),
    (LSH, {'model.distill_losses.lsh.loss.hash_dtype': 'bf16'}, 'cuda', True,
     [Goal('overhead', 1.1)]),
    (LSH, {}, 'cpu', True, [Goal('overhead', 2.0), Goal('extra_mib', 0.3 * 1024)]),
    (FCFD_FRCNN, {}, 'cpu', False, [Goal('overhead', 1.5)]),
    (FCFD_RETINA, {}, 'cpu', False, [Goal('overhead', 1.3)]),
    (FITNET, {}, 'cpu', False, [Goal('overhead', 1.05)]),
    (FCFD_RETINA, {'model.teacher_dtype': 'bf16'}, 'cpu', False,
     [Goal('overhead', 1.0, strict=True)]),
])
def test_goals(config, options, device, full, expected):
    assert goals_for(load_config(config), options, device, full) == expected


def test_goal_marks():
    assert Goal('overhead', 1.5).met(1.5) and not Goal('overhead', 1.5).met(1.51)
    assert not Goal('overhead', 1.0, strict=True).met(1.0)
    assert Goal('overhead', 1.0, strict=True).text() == '< 1.00×'
    assert Goal('extra_mib', 0.3 * 1024).text() == 'extra ≤ 0.3 GiB'
    assert Goal('overhead', 1.3).met(None) is None


def test_peak_memory_is_measured():
    mib = peak_memory(FITNET, 'distill', steps=1, batch_size=2, img_size=64)
    assert mib >= 0


def test_memory_stays_flat_over_training_steps():
    """A few train_steps: the live tensors after the warm-up are all there is at the end
    (a recorder or cache keeping a step's tensors would add some every step)."""
    r = rss_over_iterations(FCFD_FRCNN, iters=5, warmup=2, batch_size=2, img_size=64)
    assert r['tensors_end'] == r['tensors_warmup'] > 0
    assert r['rss_end_mib'] > 0 and r['rss_max_mib'] >= r['rss_warmup_mib']
    assert r['late_growth_mib'] == r['rss_end_mib'] - r['rss_half_mib']
    with pytest.raises(ValueError, match='warmup=5 must be in 1..iters-1'):
        rss_over_iterations(FITNET, iters=5, warmup=5)


# ---------------------------------------------------------------- the tool
def test_sections_of_the_docs_file_are_replaced_in_place():
    tool = load_tool('benchmark')
    text = 'intro\n'
    text = tool.replace_section(text, 'small-cpu', '## A\nrow 1')
    text = tool.replace_section(text, 'rss-cpu', '## B')
    text = tool.replace_section(text, 'small-cpu', '## A\nrow 2\n')
    assert text.startswith('intro\n')
    assert 'row 1' not in text and text.count('row 2') == 1
    assert text.index('row 2') < text.index('## B')  # kept in its place
    assert text.count('<!-- mmkd-benchmark:small-cpu begin -->') == 1


def test_tool_writes_its_section_with_goals(tmp_path):
    tool = load_tool('benchmark')
    out = tmp_path / 'bench.md'
    out.write_text('# hand-written header\n')
    tool.main(['--configs', FITNET, '--steps', '1', '--batch-size', '2', '--img-size', '64',
               '--no-memory', '--variant', 'w2:model.distill_losses.fpn_l2.loss.loss_weight=2',
               '--variants', '--out', str(out)])
    text = out.read_text()
    assert text.startswith('# hand-written header\n')
    rows = [line for line in text.splitlines() if line.startswith('| `configs/')]
    assert [r.split(' | ')[1] for r in rows] == ['plain', 'w2']
    assert all('≤ 1.05×' in r and ('| met |' in r or '**not met**' in r) for r in rows)
    # --full without timing or memory: the rows say so (the COCO configs are not built)
    tool.main(['--full', '--configs', FITNET, '--steps', '0', '--no-memory', '--variants',
               '--out', str(out)])
    text = out.read_text()
    assert '<!-- mmkd-benchmark:full-cpu begin -->' in text and 'not measured' in text
    assert 'batch 2 of 1333×800 images' in text and '| plain |' in text


def test_tool_refuses_amp_on_cpu():
    tool = load_tool('benchmark')
    with pytest.raises(SystemExit):
        tool.parse_args(['--amp'])


def test_full_size_configs_are_built_without_downloads():
    """--full builds the COCO configs: every Pretrained init is stripped (the teacher
    checkpoint is replaced by a random one when built)."""
    from mmkd.testing.tiny_config import find_urls
    cfg = load_config(osp.join(REPO, 'configs/lsh/lsh_retinanet_r101-r50_fpn_1x_coco.py'))
    assert find_urls(cfg.model) == [cfg.model.teacher_ckpt]
