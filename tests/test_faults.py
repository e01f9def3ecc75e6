"""The trainer under faults: kills at every point of a save, a damaged best, SIGTERM, SIGINT, a second
writer, a full disk. Each case runs launch.py (through tests/fault_child.py, which injects the fault from
the test side) and asserts the exit code, the one stderr line and what it names, and the workdir.

The design under test: one orbax manager holds every step, each committed once with its validation
metric inside it, so "best" and "latest" are views of the same committed steps.
"""

import json
import os
import shutil
import signal
import socket

import pytest

import trainer_testlib as T
from experiments import trainer

OVERRIDES = {**T.CHAR_OVERRIDES, 'model.cell.name': 'lstm'}  # 12 steps; checkpoints 4, 8, 12; evals 6, 12.


def _config(**more):
  return T.get_config(overrides={**OVERRIDES, **more})


def _one_line(result, code: int, *fragments: str) -> str:
  lines = T.error_lines(result.stderr)
  assert result.returncode == code, (result.returncode, result.stdout[-1500:], result.stderr[-3000:])
  assert len(lines) == 1, lines
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


def _results(stdout: str) -> dict[str, float]:
  return {
    k: float(v)
    for k, v in (
      line.split(': ')
      for line in stdout.splitlines()
      if line.split(':')[0] in ('valid_bpc', 'test_bpc', 'valid_loss')
    )
  }


def _best_and_latest(workdir):
  """(step of restore 'best', step of restore 'latest') as --mode=eval would see them."""
  config = _config()
  runner = trainer.Runner(config)
  _, best = trainer.restore_params(config, workdir, 'best', runner)
  _, latest = trainer.restore_params(config, workdir, 'latest', runner)
  return int(best['step']), int(latest['step'])


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run: (workdir, its printed results, its final params). Run first, it also fills
  the compilation cache that the later children load."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  result = T.run_launch([*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert T.error_lines(result.stderr) == []  # A clean run prints nothing on stderr.
  # Compilation is reported once, and the first progress line's rate starts after it.
  assert result.stdout.count('compiled and ran the first train step in') == 1
  params, step = T.restored_params(_config(), workdir, 'latest')
  assert step == 12
  return workdir, _results(result.stdout), params


def test_kills_at_every_point_of_a_save_leave_best_and_latest_consistent(reference, tmp_path):
  _, ref_results, ref_params = reference
  workdir = str(tmp_path / 'run')
  args = [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}']
  checkpoints = os.path.join(workdir, 'checkpoints')
  # Killed inside orbax with the improved evaluation of step 6 fully written to its temporary folder,
  # just before the rename that commits it: step 6 (and with it the newer best) does not exist.
  killed = T.run_launch(args, faults={'kill_before_commit': 6})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert T.checkpoint_steps(workdir) == [4]
  assert [n for n in os.listdir(checkpoints) if n.startswith('6.orbax-checkpoint-tmp')]
  assert _best_and_latest(workdir) == (4, 4)  # No evaluated step yet: best is the latest.
  # Resumed (the half step is cleaned up), evaluated again at 6, killed right after committing step 8.
  killed = T.run_launch(args, faults={'kill_after_commit': 8})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert 'resuming from step 4' in killed.stdout
  assert T.checkpoint_steps(workdir) == [4, 6, 8]
  assert not [n for n in os.listdir(checkpoints) if 'tmp' in n]
  assert _best_and_latest(workdir) == (6, 8)  # Best: the only evaluation committed; latest: 8.
  # Resumed to the end: the same best step, metric and parameters as the run never killed.
  done = T.run_launch(args)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'resuming from step 8' in done.stdout
  assert _results(done.stdout) == ref_results
  assert _best_and_latest(workdir) == (12, 12) and T.checkpoint_steps(workdir) == [6, 8, 12]
  params, _ = T.restored_params(_config(), workdir, 'latest')
  T.assert_trees_equal(params, ref_params)


def test_damaged_best_falls_back_to_the_best_intact_evaluation(reference, tmp_path):
  ref_dir = reference[0]
  workdir = str(tmp_path / 'run')
  shutil.copytree(ref_dir, workdir)
  T.truncate_largest_file(os.path.join(workdir, 'checkpoints', '12'))  # Best (and latest).
  before = T.tree_snapshot(workdir)
  result = T.run_launch([*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}', '--mode=eval'])
  _one_line(
    result, 0, 'best checkpoint step 12', 'damaged', 'using step 6', 'best intact evaluation', 'valid bpc'
  )
  assert 'evaluating the best checkpoint (step 6)' in result.stdout
  assert 'valid_bpc' in _results(result.stdout)
  assert T.tree_snapshot(workdir) == before  # --mode=eval reads only.


def test_damaged_best_during_training_still_reports_results(tmp_path):
  """The step-12 best is damaged right after its commit: the run reports step 6 and exits 0."""
  workdir = str(tmp_path / 'run')
  result = T.run_launch(
    [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'], faults={'damage_after_commit': 12}
  )
  _one_line(result, 0, 'best checkpoint step 12', 'using step 6')
  assert 'valid_bpc' in _results(result.stdout) and 'test_bpc' in _results(result.stdout)
  assert os.path.isdir(os.path.join(workdir, 'damaged', 'checkpoints-12'))  # Set aside, not deleted.


def test_sigterm_saves_at_the_next_step_and_exits_143(tmp_path):
  workdir = str(tmp_path / 'run')
  result = T.run_launch(
    [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'],
    faults={'signal_after_step': [5, 'SIGTERM']},
  )
  _one_line(
    result,
    128 + signal.SIGTERM,
    'stopped by SIGTERM at step 5 of 12',
    'checkpoint saved',
    'run the same command to resume',
  )
  assert T.checkpoint_steps(workdir) == [4, 5]
  assert _latest_step(workdir) == 5
  assert not os.path.exists(os.path.join(workdir, 'lock'))


def _latest_step(workdir) -> int:
  _, state = trainer.restore_params(_config(), workdir, 'latest')  # Restores and checks the sha256.
  return int(state['step'])


def test_sigint_from_outside_saves_and_exits_130(tmp_path):
  workdir = str(tmp_path / 'run')
  child = T.run_launch(
    [*T.launch_args(overrides={**OVERRIDES, 'train.num_steps': 100000}), f'--workdir={workdir}'],
    background=True,
  )
  try:
    for line in child.stdout:  # Wait until training runs (compiled, past the first log line).
      if line.startswith('step 4/'):
        break
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
  finally:
    if child.poll() is None:
      child.kill()
  result = type('Result', (), {'returncode': child.returncode, 'stdout': out, 'stderr': err})
  line = _one_line(result, 128 + signal.SIGINT, 'stopped by SIGINT at step', 'checkpoint saved')
  step = int(line.split('at step ')[1].split()[0])
  assert step >= 4 and T.checkpoint_steps(workdir)[-1] == step
  assert 'Traceback' not in err


def test_second_writer_is_refused_and_changes_nothing(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  from experiments import validate

  validate.write_config(str(workdir), T.get_config(overrides=OVERRIDES))  # The run the holder trains.
  # A live holder on this host: this test process.
  (workdir / 'lock').write_text(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(), 'time': 0}))
  before = T.tree_snapshot(str(workdir))
  result = T.run_launch([*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'])
  _one_line(
    result,
    1,
    'is being trained by',
    f'pid {os.getpid()}',
    f'host {socket.gethostname()}',
    'wait for it or stop it',
  )
  assert T.tree_snapshot(str(workdir)) == before


def test_full_disk_stops_with_one_line_and_an_intact_last_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  result = T.run_launch(
    [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'], faults={'enospc_at_save': 8}
  )
  _one_line(
    result, 1, 'no space left on the device', 'at step 8', 'last intact checkpoint is step 6', 'free space'
  )
  assert T.checkpoint_steps(workdir) == [4, 6]
  assert not [n for n in os.listdir(os.path.join(workdir, 'checkpoints')) if 'tmp' in n]
  assert _latest_step(workdir) == 6
  assert not os.path.exists(os.path.join(workdir, 'lock'))


def test_a_workdir_that_cannot_be_written_is_one_error_before_anything_is_written(tmp_path):
  from experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  a_file = tmp_path / 'a_file'
  a_file.write_text('x')
  for bad in (a_file, a_file / 'run'):
    with pytest.raises(workdir_lib.WorkdirError, match='cannot write to the workdir .* choose another'):
      workdir_lib.Lock(workdir_lib.as_path(bad)).acquire()
  assert a_file.read_text() == 'x'


def test_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(tmp_path):
  """The NaN is injected into the jitted step through the task (tests/fault_child.py), not the config."""
  workdir = str(tmp_path / 'run')
  result = T.run_launch(
    [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'], faults={'nan_at_step': 5}
  )
  # state['step'] == 5 is the 6th update; the guard is read at step 6 (a log step): checkpoint 4 is kept.
  _one_line(result, 1, 'NaN or Inf at step 5', 'last good checkpoint is step 4')
  assert T.checkpoint_steps(workdir) == [4]
  assert not os.path.exists(os.path.join(workdir, 'lock'))


def test_orphaned_orbax_restore_tasks_are_not_logged_but_other_asyncio_errors_are(caplog):
  """A damaged checkpoint's abandoned deserialisation tasks, collected late, stay off stderr (CI saw
  80 lines of them once); any other never-retrieved task error still reaches the log."""
  import asyncio

  from experiments import checkpoints  # noqa: F401  (installs the filter)

  class Task:
    def __init__(self, coro: str):
      self.coro = coro

    def __repr__(self):
      return f'<Task finished coro=<{self.coro}() done, defined at /site-packages/{self.coro}.py:1>>'

  loop = asyncio.new_event_loop()
  try:
    with caplog.at_level('ERROR', logger='asyncio'):
      for coro in ('orbax/checkpoint/_src/serialization/async_deserialize', 'my_own_coroutine'):
        loop.call_exception_handler(
          {'message': 'Task exception was never retrieved', 'exception': ValueError(), 'future': Task(coro)}
        )
  finally:
    loop.close()
  logged = [r.getMessage() for r in caplog.records if r.name == 'asyncio']
  assert len(logged) == 1 and 'my_own_coroutine' in logged[0], logged
