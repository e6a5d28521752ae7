"""TeacherEvalHook: the teacher is evaluated once before training; a teacher scoring ~0
is reported, and with ``min_score`` stops the run."""
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from mmkd.hooks import TeacherEvalHook


class FakeDistiller:
    """Records which network predicted; ``val_step`` returns the batch."""

    def __init__(self):
        self.with_teacher = False
        self.predicted_by = []
        self.training = True

    @contextmanager
    def predicting_with_teacher(self):
        self.with_teacher = True
        yield
        self.with_teacher = False

    def val_step(self, batch):
        self.predicted_by.append('teacher' if self.with_teacher else 'student')
        return batch

    def eval(self):
        self.training = False

    def train(self):
        self.training = True


class FakeEvaluator:
    def __init__(self, metrics):
        self.metrics, self.seen = metrics, []

    def process(self, data_samples, data_batch):
        self.seen.append(data_batch)

    def evaluate(self, size):
        return dict(self.metrics)


class ListLoader(list):
    @property
    def dataset(self):
        return self


def make_runner(metrics, iteration=0):
    info, warnings = {}, []
    logger = SimpleNamespace(info=lambda msg: None, warning=warnings.append)
    loop = SimpleNamespace(dataloader=ListLoader([1, 2, 3]), evaluator=FakeEvaluator(metrics))
    return SimpleNamespace(model=FakeDistiller(), val_loop=loop, iter=iteration,
                           logger=logger, message_hub=SimpleNamespace(
                               update_info=info.__setitem__)), info, warnings


def test_teacher_is_evaluated_before_training_and_logged():
    runner, info, warnings = make_runner({'coco/bbox_mAP': 0.42, 'coco/bbox_mAP_50': 0.6})
    TeacherEvalHook(min_score=0.1).before_train(runner)
    assert runner.model.predicted_by == ['teacher'] * 3
    assert runner.val_loop.evaluator.seen == [1, 2, 3]
    assert info == {'teacher/coco/bbox_mAP': 0.42, 'teacher/coco/bbox_mAP_50': 0.6}
    assert runner.model.training and not runner.model.with_teacher and not warnings


@pytest.mark.parametrize('metrics', [{'accuracy/top1': 0.0}, {}])
def test_a_teacher_scoring_zero_is_reported_and_min_score_stops(metrics):
    runner, _, warnings = make_runner(metrics)
    TeacherEvalHook().before_train(runner)
    assert len(warnings) == 1 and 'model.teacher_ckpt' in warnings[0]
    with pytest.raises(RuntimeError, match=r'below min_score=0.5.*model.teacher_ckpt'):
        TeacherEvalHook(min_score=0.5).before_train(make_runner(metrics)[0])


def test_a_resumed_run_is_not_evaluated_again():
    runner, info, _ = make_runner({'accuracy/top1': 0.0}, iteration=10)
    TeacherEvalHook(min_score=0.5).before_train(runner)
    assert runner.model.predicted_by == [] and info == {}


class Annotations(ListLoader):
    def __init__(self, items, ann_file):
        super().__init__(items)
        self.ann_file = ann_file


def runner_with_teacher(tmp_path, metrics):
    """A runner whose distiller names a teacher checkpoint file and whose validation set
    an annotation file, both in ``tmp_path``."""
    runner, info, warnings = make_runner(metrics)
    ckpt, ann = tmp_path / 'teacher.pth', tmp_path / 'val.json'
    for path in (ckpt, ann):
        if not path.exists():
            path.write_text('x')
    runner.model.teacher_ckpt = str(ckpt)
    runner.model.teacher = SimpleNamespace(test_cfg=dict(score_thr=0.05))
    runner.val_loop.dataloader = Annotations([1, 2, 3], str(ann))
    return runner, info


def test_a_second_run_with_the_same_teacher_and_data_reads_the_first_ones_metrics(tmp_path):
    first, info = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.42})
    TeacherEvalHook().before_train(first)
    assert first.model.predicted_by == ['teacher'] * 3
    assert (tmp_path / 'teacher.pth.eval.json').is_file()

    second, info = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.0})  # not consulted
    TeacherEvalHook(min_score=0.4).before_train(second)
    assert second.model.predicted_by == [] and info == {'teacher/coco/bbox_mAP': 0.42}

    # not when asked not to, nor after the checkpoint or the validation set changed
    third, info = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.5})
    TeacherEvalHook(reuse=False).before_train(third)
    assert third.model.predicted_by == ['teacher'] * 3
    for changed in ('teacher.pth', 'val.json'):
        (tmp_path / changed).write_text('a different file')
        again, info = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.5})
        TeacherEvalHook().before_train(again)
        assert again.model.predicted_by == ['teacher'] * 3, changed
        assert info == {'teacher/coco/bbox_mAP': 0.5}


def test_another_teacher_test_setting_is_evaluated_again(tmp_path):
    first, _ = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.42})
    TeacherEvalHook().before_train(first)
    second, info = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.3})
    second.model.teacher = SimpleNamespace(test_cfg=dict(score_thr=0.3))
    TeacherEvalHook().before_train(second)
    assert second.model.predicted_by == ['teacher'] * 3 and info['teacher/coco/bbox_mAP'] == 0.3


def test_another_test_pipeline_is_evaluated_again(tmp_path):
    first, _ = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.42})
    first.val_loop.dataloader.pipeline = 'Resize(scale=(128, 128))'
    TeacherEvalHook().before_train(first)
    second, info = runner_with_teacher(tmp_path, {'coco/bbox_mAP': 0.3})
    second.val_loop.dataloader.pipeline = 'Resize(scale=(256, 256))'
    TeacherEvalHook().before_train(second)
    assert second.model.predicted_by == ['teacher'] * 3 and info['teacher/coco/bbox_mAP'] == 0.3
