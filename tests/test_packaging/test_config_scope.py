"""``mmkd::`` config paths through MMEngine's package scopes, from outside the checkout."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import get_installed_path

import mmkd
from helpers import repo_path
from mmkd.models.distillers.teacher import resolve_model_config
from mmkd.utils.package_scope import MMKD_CONFIG_ROOT, MMKD_TOOLS_ROOT

LSH_COCO = 'lsh/lsh_faster-rcnn_r101-r50_fpn_1x_coco.py'


def test_mim_folder_is_the_packages_configs_and_tools():
    package = osp.dirname(mmkd.__file__)
    assert MMKD_CONFIG_ROOT == osp.join(package, '.mim', 'configs')
    # a checkout (editable install): links to the top-level folders, not copies
    assert osp.realpath(MMKD_CONFIG_ROOT) == osp.realpath(repo_path('configs'))
    assert osp.realpath(MMKD_TOOLS_ROOT) == osp.realpath(repo_path('tools'))
    assert osp.isfile(osp.join(package, '.mim', 'model-index.yml'))


def test_mmengine_locates_the_imported_mmkd():
    # MMEngine looks the scope up as a package; it must find this mmkd, not a dist-info
    assert 'mmkd' in MODULE2PACKAGE
    assert get_installed_path(MODULE2PACKAGE['mmkd']) == osp.dirname(mmkd.__file__)


def test_mmkd_base_resolves_from_any_directory(tmp_path, monkeypatch):
    user = tmp_path / 'my_project'
    user.mkdir()
    (user / 'my_distill.py').write_text(
        f"_base_ = ['mmkd::{LSH_COCO}']\n"
        "model = dict(distill_losses=dict(lsh=dict(loss=dict(loss_weight=3.0))))\n"
        "train_cfg = dict(max_epochs=6)\n")
    monkeypatch.chdir(user)
    cfg = Config.fromfile('my_distill.py')
    ours = Config.fromfile(repo_path('configs', LSH_COCO))
    assert cfg.model.type == 'DetectionDistiller'
    assert cfg.model.distill_losses.lsh.loss.loss_weight == 3.0
    assert cfg.train_cfg.max_epochs == 6
    # everything not overridden is the shipped config's
    assert cfg.model.teacher == ours.model.teacher
    assert cfg.model.student == ours.model.student
    assert cfg.train_dataloader == ours.train_dataloader


def test_teacher_mmkd_path_and_missing_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = resolve_model_config('mmkd::synthetic/retinanet_r18_fpn_teacher_synth.py')
    assert model.type == 'RetinaNet'
    (tmp_path / 'bad.py').write_text("_base_ = ['mmkd::lsh/no_such_config.py']\n")
    with pytest.raises(FileNotFoundError, match='no_such_config'):
        Config.fromfile(str(tmp_path / 'bad.py'))
    with pytest.raises(FileNotFoundError, match='no_such_teacher'):
        resolve_model_config('mmkd::synthetic/no_such_teacher.py')


def test_objects_of_an_mmkd_base_build_in_the_configs_own_scope(tmp_path, monkeypatch):
    """MMEngine tags the dicts of a ``pkg::`` base with ``_scope_='pkg'``; mmkd's scope
    registries build them from the config's scope (mmdet, or mmpretrain)."""
    from mmengine.registry import MODELS, TRANSFORMS, VISUALIZERS, init_default_scope
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'det.py').write_text(
        "_base_ = ['mmkd::baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py']\n"
        "visualizer = dict(name='scope_test_visualizer', save_dir='vis')\n")
    cfg = Config.fromfile('det.py')
    assert cfg.model._scope_ == 'mmkd' and cfg.visualizer._scope_ == 'mmkd'
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DetectionDistiller'
    assert type(model.student).__module__.startswith('mmdet.')
    assert type(VISUALIZERS.build(cfg.visualizer)).__name__ == 'DetLocalVisualizer'
    resize = TRANSFORMS.build(cfg.train_pipeline[2])
    assert type(resize).__module__.startswith('mmdet.')  # mmdet's Resize, not mmcv's

    (tmp_path / 'cls.py').write_text(
        "_base_ = ['mmkd::classification/synthetic/resnet32_synth.py']\n")
    cfg = Config.fromfile('cls.py')
    init_default_scope(cfg.default_scope)
    classifier = MODELS.build(cfg.model)
    assert type(classifier).__module__.startswith('mmpretrain.')
    init_default_scope('mmdet')
