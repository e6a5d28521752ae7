"""The demo's runs as forks of a process that has imported the stack once
(``mmkd.apis.forked_runs``): a forked run behaves as a new process would — its output in
its log, its exit status, its environment and torch threads, and nothing it changes
reaches the parent."""
import io
import os
import sys
import time

import pytest

from mmkd.apis.forked_runs import ForkedRun, can_fork, start_run

pytestmark = pytest.mark.skipif(not can_fork(), reason='forked runs are Linux-only')


def run_script(tmp_path, body: str, threads: int = 1, env=None):
    script = tmp_path / 'tool.py'
    script.write_text(body)
    log_path = tmp_path / 'run.log'
    with open(log_path, 'w') as log:
        run = ForkedRun([sys.executable, str(script), 'a1', '--b'], str(tmp_path), log,
                        dict(env or os.environ), threads)
        code = run.wait()
    return code, log_path.read_text()


def test_a_forked_script_gets_its_argv_cwd_env_threads_and_returns_its_status(tmp_path):
    body = ('import os, sys, torch\n'
            'print("argv", sys.argv[1:], "cwd", os.getcwd())\n'
            'print("env", os.environ["MMKD_TEST_VALUE"], "threads", torch.get_num_threads())\n'
            'sys.stderr.write("to stderr\\n")\n'
            'GLOBAL_STATE = sys.modules["mmkd"].__dict__.setdefault("_forked_mark", 1)\n'
            'if __name__ == "__main__":\n'
            '    raise SystemExit(3)\n')
    env = dict(os.environ, MMKD_TEST_VALUE='seven')
    code, log = run_script(tmp_path, body, threads=2, env=env)
    assert code == 3
    assert f"argv ['a1', '--b'] cwd {tmp_path}" in log
    assert 'env seven threads 2' in log and 'to stderr' in log
    import mmkd
    assert not hasattr(mmkd, '_forked_mark')  # the child's changes stay in the child
    assert 'MMKD_TEST_VALUE' not in os.environ


def test_an_exception_or_a_message_exit_leaves_the_traceback_and_status_1(tmp_path):
    code, log = run_script(tmp_path, 'raise ValueError("the config is wrong")\n')
    assert code == 1
    assert 'Traceback' in log and 'ValueError: the config is wrong' in log
    code, log = run_script(tmp_path, 'raise SystemExit("train: no such config")\n')
    assert code == 1 and 'train: no such config' in log
    code, _ = run_script(tmp_path, 'print("fine")\n')
    assert code == 0


def test_poll_and_terminate_like_popen(tmp_path):
    script = tmp_path / 'slow.py'
    script.write_text('import time\ntime.sleep(30)\n')
    with open(tmp_path / 'slow.log', 'w') as log:
        run = ForkedRun([sys.executable, str(script)], str(tmp_path), log, dict(os.environ))
        assert run.poll() is None
        run.terminate()
        assert run.wait() < 0  # killed by a signal, as Popen reports it
        assert run.poll() == run.returncode


def test_start_run_forks_only_python_scripts(tmp_path):
    script = tmp_path / 'tool.py'
    script.write_text('print("ok")\n')
    with open(tmp_path / 'log', 'w') as log:
        forked = start_run([sys.executable, str(script)], str(tmp_path), log,
                           dict(os.environ), 1, fork=True)
        inline = start_run([sys.executable, '-c', 'print(1)'], str(tmp_path), log,
                           dict(os.environ), 1, fork=True)
        unforked = start_run([sys.executable, str(script)], str(tmp_path), log,
                             dict(os.environ), 1, fork=False)
        assert isinstance(forked, ForkedRun)
        assert not isinstance(inline, ForkedRun) and not isinstance(unforked, ForkedRun)
        assert [p.wait() for p in (forked, inline, unforked)] == [0, 0, 0]
    with pytest.raises(ValueError, match='runs \\[sys.executable, SCRIPT.py'):
        ForkedRun(['python3', 'x.py'], str(tmp_path), io.StringIO(), {})


def test_the_demo_runs_forked_jobs_side_by_side_and_reports_a_failure(tmp_path):
    from helpers import load_tool
    demo = load_tool('demo')
    order = tmp_path / 'order.txt'

    def job(key, seconds=0.0, code=0):
        script = tmp_path / f'{key}.py'
        script.write_text(f'import time\nopen({str(order)!r}, "a").write("start {key}\\n")\n'
                          f'time.sleep({seconds})\n'
                          f'open({str(order)!r}, "a").write("end {key}\\n")\n'
                          f'raise SystemExit({code})\n')
        return demo.Job(key, key, [sys.executable, str(script)],
                        str(tmp_path / key / 'train.log'), 10)

    board = demo.StatusBoard(0.0, stream=io.StringIO())
    start = time.time()
    demo.run_jobs([job('one', 0.5), job('two', 0.5)], 2, board, poll=0.05, fork=True)
    events = [e for e in order.read_text().split('\n') if e]
    assert events.index('start two') < events.index('end one')  # side by side
    assert time.time() - start < 5
    with pytest.raises(SystemExit, match='command failed'):
        demo.run_jobs([job('bad', code=3)], 2, board, poll=0.05, fork=True)
