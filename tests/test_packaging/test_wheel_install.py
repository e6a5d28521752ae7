"""mmkd as a wheel: built with ``pip wheel``, installed into a fresh virtual environment
next to the pinned stack, used from a directory outside the repository as an OpenMMLab
user would (``mmkd::`` bases, ``mim run mmkd export_student``, ``mim train`` /
``mim test mmkd``)."""
import glob
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest
import torch
from mmengine.config import Config

from helpers import repo_path, save_random_checkpoint

needs_mim = pytest.mark.skipif(importlib.util.find_spec('mim') is None,
                               reason='openmim is pinned in the Makefile (make env)')

#: what a wheel is built from (a copy, so that building never writes into the checkout)
SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'requirements', 'mmkd', 'configs', 'tools')
FITNET = 'baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py'
TEACHER = 'synthetic/retinanet_r18_fpn_teacher_synth.py'


def run(cmd, cwd, timeout=300, env=None) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> str:
    """``pip wheel --no-deps`` of a copy of the checkout (symbolic links kept as links)."""
    root = tmp_path_factory.mktemp('wheel')
    src = root / 'src'
    skip = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')
    for name in SOURCES:
        path = repo_path(name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, symlinks=True, ignore=skip)
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy(path, src / name)
    assert osp.islink(src / 'mmkd' / '.mim' / 'configs')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', root / 'dist', src], cwd=root)
    wheels = [f for f in os.listdir(root / 'dist') if f.endswith('.whl')]
    assert len(wheels) == 1, wheels
    return str(root / 'dist' / wheels[0])


@pytest.fixture(scope='module')
def wheel_env(wheel, tmp_path_factory) -> str:
    """A new virtual environment with the wheel installed; the pinned stack (torch, mmcv,
    mmdet, openmim...) comes from this interpreter's site-packages through a ``.pth``
    file. Returns its python."""
    venv = tmp_path_factory.mktemp('venv')
    run([sys.executable, '-m', 'venv', '--without-pip', venv], cwd=venv)
    python = venv / 'bin' / 'python'
    purelib = run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                  cwd=venv).strip()
    with open(osp.join(purelib, 'pinned_stack.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q', '--no-deps',
         '--no-index', wheel], cwd=venv)
    return str(python)


def installed_mmkd(python: str) -> str:
    """The mmkd package folder of the environment of ``python``."""
    venv = osp.dirname(osp.dirname(python))
    found = glob.glob(osp.join(venv, 'lib', 'python*', 'site-packages', 'mmkd'))
    assert len(found) == 1, found
    return found[0]


def outside_env() -> dict:
    # nothing pointing at the checkout: PYTHONPATH cleared, cwd outside the repository
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH',
                                                             'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')}
    env['OMP_NUM_THREADS'] = '1'
    return env


def test_wheel_carries_configs_and_tools_as_files(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for path in ('mmkd/.mim/model-index.yml', 'mmkd/.mim/tools/train.py',
                 'mmkd/.mim/tools/test.py', 'mmkd/.mim/tools/export_student.py',
                 'mmkd/.mim/tools/dist_train.sh',
                 'mmkd/.mim/configs/lsh/lsh_faster-rcnn_r101-r50_fpn_1x_coco.py',
                 'mmkd/.mim/configs/_base_/default_runtime.py', 'mmkd/__init__.py'):
        assert path in names, path
    n_configs = sum(n.startswith('mmkd/.mim/configs/') and n.endswith('.py') for n in names)
    on_disk = sum(f.endswith('.py') for _, _, fs in os.walk(repo_path('configs')) for f in fs)
    assert n_configs == on_disk
    assert not any('__pycache__' in n or n.endswith('.pyc') for n in names)


@needs_mim
def test_mim_run_export_student_from_the_wheel(wheel_env, tmp_path):
    ckpt = tmp_path / 'distiller.pth'
    torch.save(dict(meta=dict(iter=2), state_dict={
        'student.backbone.w': torch.arange(3.), 'distill_losses.fpn.connector.w': torch.ones(1)
    }), ckpt)
    out = run([wheel_env, '-m', 'mim', 'run', 'mmkd', 'export_student', ckpt,
               '--out', tmp_path / 'student.pth'], cwd=tmp_path, env=outside_env())
    script = out.split('Use the script ')[1].split(' for command')[0]
    assert script == osp.join(installed_mmkd(wheel_env), '.mim', 'tools', 'export_student.py')
    student = torch.load(tmp_path / 'student.pth', weights_only=True)
    assert list(student['state_dict']) == ['backbone.w']
    torch.testing.assert_close(student['state_dict']['backbone.w'], torch.arange(3.))


@needs_mim
def test_mim_train_and_test_from_the_wheel(wheel_env, tiny_det_data, tmp_path):
    """``mim train mmkd`` on a user's config that inherits ``mmkd::`` (two iterations),
    then ``mim test mmkd CONFIG --checkpoint`` with the config found by name in the
    installed package."""
    teacher = save_random_checkpoint(Config.fromfile(repo_path('configs', TEACHER)).model,
                                     str(tmp_path / 'teacher.pth'))
    root = tiny_det_data.rstrip('/') + '/'
    (tmp_path / 'my_fitnet.py').write_text(f"""
_base_ = ['mmkd::{FITNET}']
model = dict(teacher_ckpt={teacher!r})
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={root!r}))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={root!r}))
val_evaluator = dict(ann_file={root + 'annotations/instances_val.json'!r})
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
custom_hooks = [dict(type='StudentExportHook')]
""")
    work = tmp_path / 'work'
    out = run([wheel_env, '-m', 'mim', 'train', 'mmkd', 'my_fitnet.py', '--work-dir', work],
              cwd=tmp_path, env=outside_env(), timeout=600)
    assert 'Training finished successfully' in out, out[-2000:]
    # the wheel's own tools and configs ran (copies in the new environment), and its
    # mmkd:: paths resolved there: the user's base and the config's teacher
    script = out.split('Training command is ')[1].split()[1]
    assert script == osp.join(installed_mmkd(wheel_env), '.mim', 'tools', 'train.py')
    assert not osp.islink(osp.join(installed_mmkd(wheel_env), '.mim', 'configs'))
    assert osp.isfile(work / 'iter_2.pth') and osp.isfile(work / 'iter_2_student.pth')

    options = [f'test_dataloader.dataset.data_root={root}',
               f'test_evaluator.ann_file={root}annotations/instances_val.json',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
               'model.student.test_cfg.score_thr=0.0']
    out = run([wheel_env, '-m', 'mim', 'test', 'mmkd', osp.basename(FITNET),
               '--checkpoint', work / 'iter_2.pth', '--work-dir', tmp_path / 'test',
               '--cfg-options', *options], cwd=tmp_path, env=outside_env(), timeout=600)
    found = out.split('will use ')[1].split(' instead')[0]
    assert found == osp.join(installed_mmkd(wheel_env), '.mim', 'configs', FITNET)
    assert 'Testing finished successfully' in out and 'coco/bbox_mAP' in out, out[-2000:]
