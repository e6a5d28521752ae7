"""Hooks: schedules, teacher evaluation and student export during training."""
from .distill_schedule_hook import DistillScheduleHook
from .lsh_bias_init_hook import LSHBiasInitHook
from .student_export_hook import StudentExportHook, student_path
from .teacher_eval_hook import TeacherEvalHook

__all__ = [
    'DistillScheduleHook', 'LSHBiasInitHook', 'StudentExportHook', 'TeacherEvalHook',
    'student_path'
]
