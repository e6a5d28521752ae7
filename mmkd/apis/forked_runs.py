"""Starting tool scripts (``tools/train.py``, ...) as forks of a process that has already
imported torch, mmdet and mmkd, instead of as new Python processes.

The demo starts some thirty short training runs on a 2-core machine; a new interpreter
spends ~6 s of CPU importing torch, mmengine, mmdet (which pulls in mmpretrain and
torchvision) and mmkd before its first iteration: a sixth of a 60-second run. The demo
imports them once (:func:`preload`) and forks a child per run (:class:`ForkedRun`). The
child is a separate process as before — its own memory, registries and logger instances,
its output in the run's log file, its exit code — so a run cannot change another.

Forking is safe here because the parent imports but never computes: no OpenMP or MKL
thread pool exists in it (a fork copies only the calling thread, and a pool created before
the fork would hang the child's first parallel op). :func:`can_fork` is true on Linux
only; elsewhere (macOS, where forking after importing system frameworks is unsafe, and
Windows, which has no fork) the demo starts new processes as before.
"""
import importlib
import os
import runpy
import signal
import subprocess
import sys
import traceback
from typing import IO, Dict, List, Optional, Union

#: what ``tools/train.py`` and ``tools/class_means.py`` import, mmkd first (it makes
#: torchvision importable next to a CPU-only torch), then what mmdet's
#: ``register_all_modules`` imports when a runner starts
PRELOAD = ('mmkd', 'mmengine.runner', 'mmdet.datasets', 'mmdet.engine', 'mmdet.evaluation',
           'mmdet.models', 'mmdet.visualization')


def runs_python_script(cmd: List[str]) -> bool:
    """Whether ``cmd`` is ``[sys.executable, SCRIPT.py, ...]``, what a fork can run."""
    return len(cmd) >= 2 and cmd[0] == sys.executable and cmd[1].endswith('.py')


def can_fork() -> bool:
    """Whether :class:`ForkedRun` may be used on this platform (Linux)."""
    return sys.platform.startswith('linux') and hasattr(os, 'fork')


def preload(modules=PRELOAD) -> None:
    """Import ``modules`` into this process, for the forked runs to inherit."""
    for name in modules:
        importlib.import_module(name)


class ForkedRun:
    """``python SCRIPT ARGS...`` run in a fork of this process, with ``subprocess.Popen``'s
    ``poll`` / ``wait`` / ``terminate`` / ``returncode``.

    Args:
        cmd (list[str]): ``[sys.executable, script, *args]``, as for ``Popen``.
        cwd (str): the child's working directory.
        log (file): where the child's stdout and stderr go (an open file).
        env (dict): the child's environment (replaces this process's).
        threads (int): ``torch.set_num_threads`` in the child.
    """

    def __init__(self, cmd: List[str], cwd: str, log: IO, env: Dict[str, str],
                 threads: int = 1) -> None:
        if not runs_python_script(cmd):
            raise ValueError(f'ForkedRun runs [sys.executable, SCRIPT.py, ...], got {cmd}')
        sys.stdout.flush()
        sys.stderr.flush()
        self.args = cmd
        self.returncode: Optional[int] = None
        self.pid = os.fork()
        if self.pid == 0:
            self._child(cmd, cwd, log, env, threads)  # never returns

    @staticmethod
    def _child(cmd: List[str], cwd: str, log: IO, env: Dict[str, str],
               threads: int) -> None:
        code = 1
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            # the parent's sys.stdout may not be fd 1 (a capture, a wrapper): new streams
            # on the log, line-buffered as a terminal would be
            sys.stdout = open(1, 'w', buffering=1, closefd=False)
            sys.stderr = open(2, 'w', buffering=1, closefd=False)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            import torch
            torch.set_num_threads(threads)
            sys.argv = list(cmd[1:])
            runpy.run_path(cmd[1], run_name='__main__')
            code = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:  # SystemExit('message'): the message, then status 1, as Python does
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: B902  (the log must show whatever stopped the run)
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: B902  (exiting anyway)
                    pass
            os._exit(code)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def start_run(cmd: List[str], cwd: str, log: IO, env: Dict[str, str], threads: int,
              fork: bool) -> Union[ForkedRun, subprocess.Popen]:
    """``cmd`` as a :class:`ForkedRun` when ``fork`` is set and ``cmd`` runs a Python
    script with this interpreter, else as a new process (``subprocess.Popen``)."""
    if fork and runs_python_script(cmd):
        return ForkedRun(cmd, cwd, log, env, threads)
    return subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
