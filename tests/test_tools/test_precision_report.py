"""tools/precision_report.py: the bf16 teacher's error on the loss inputs and the dense
LSH bits bf16 hashing flips, measured on the config's own training batches."""
import torch
from helpers import load_tool, point_at_data, repo_path, save_random_teachers
from mmengine.config import Config

from mmkd.apis.precision_report import hash_bit_flips, teacher_dtype_errors
from mmkd.models.losses.dense_lsh_loss import bf16_bit_flips


def lsh_config(tiny_det_data):
    cfg = point_at_data(Config.fromfile(repo_path(
        'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py')), tiny_det_data)
    cfg.model.distill_losses.lsh.loss.num_hashes = 256  # a small projection, same path
    return cfg


def test_report_measures_small_nonzero_changes(tiny_det_data, tmp_path):
    teacher = save_random_teachers(tmp_path, seed=4)['retina']
    cfg = lsh_config(tiny_det_data)
    errors = teacher_dtype_errors(cfg, teacher, 'bf16', num_batches=1)
    assert set(errors) == {'lsh.teacher_feat'}
    assert 0 < errors['lsh.teacher_feat'] < 3e-2  # bf16 rounding through 20+ layers
    flips = hash_bit_flips(cfg, teacher, num_batches=1)
    assert set(flips) == {'lsh'} and 0 <= flips['lsh'] < 0.02


def test_bit_flips_equal_an_unfolded_count_over_kept_locations():
    """bf16 hashing = bf16-rounded operands, fp32 accumulation: the flips equal those of
    an unfolded matrix product on rounded operands, counted at kept locations only."""
    from mmkd.models.losses.dense_lsh_loss import unfold_levels
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 9 * 4, generator=g)
    feat = (torch.randn(2, 4, 5, 5, generator=g).clamp(min=0), )
    mask = (torch.rand(2, 25, generator=g) > 0.4, )
    flipped, total = bf16_bit_flips(feat, weight, None, mask)
    rows = unfold_levels(feat)  # [2, 25, 36]
    exact = rows @ weight.t() > 0
    rounded = rows.bfloat16().float() @ weight.bfloat16().float().t() > 0
    expect = ((exact != rounded) & mask[0].unsqueeze(-1)).sum()
    assert int(total) == int(mask[0].sum()) * 64
    assert abs(int(flipped) - int(expect)) <= 2  # summation order aside
    flipped_all, _ = bf16_bit_flips(feat, weight, None)
    assert int(flipped_all) >= int(flipped) and int(flipped_all) > 0


def test_cli_prints_both_tables(tiny_det_data, tmp_path, capsys, monkeypatch):
    teacher = save_random_teachers(tmp_path, seed=5)['retina']
    cfg = lsh_config(tiny_det_data)
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    tool = load_tool('precision_report')
    monkeypatch.setattr('sys.argv', ['precision_report.py', path, '--teacher-ckpt', teacher,
                                     '--batches', '1'])
    tool.main()
    out = capsys.readouterr().out
    assert '| `lsh.teacher_feat` |' in out and 'teacher bits flipped by bf16 hashing' in out
