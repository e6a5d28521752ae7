"""tools/benchmark.py's measurement: the three variants run and are timed."""
import os.path as osp

import pytest

from helpers import REPO
from mmkd.apis.benchmark import VARIANTS, peak_memory, time_variants


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


def test_peak_memory_is_measured():
    mib = peak_memory(osp.join(REPO, 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py'),
                      'distill', steps=1, batch_size=2, img_size=64)
    assert mib >= 0
