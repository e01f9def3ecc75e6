"""Sharded and multi-process training give the same losses and parameters as one device.

Three runs of the same 12-step tiny config start together: 8 fake CPU devices on a ('data', 'model') =
(4, 2) mesh (big kernels split along 'model'), two processes joined by jax.distributed on localhost (one
CPU device each, gloo collectives, each reading its own half of every batch, async checkpoints with
per-process shard checksums), and -- in this process -- one device. The two processes are SIGKILLed
after the commit of step 8 and then resumed: the resumed pair must still match one device.
"""

import jax
import numpy as np
import pytest

import trainer_testlib as T
from experiments import metrics as metrics_lib
from experiments import trainer

# SGD rather than Adam: Adam's m / sqrt(v) turns float reassociation noise in near-zero gradients into
# O(learning rate) parameter differences, which would hide real sharding bugs behind a loose tolerance.
OVERRIDES = {
  **T.CHAR_OVERRIDES,
  'model.cell.name': 'lstm',
  'train.optimizer': 'nesterov',
  'train.learning_rate': 0.5,
}


def _train_losses(workdir):
  """Train losses of the log windows; a resumed run logs its windows again, the later record wins."""
  return {r['step']: r['train/loss'] for r in metrics_lib.read_metrics(workdir) if 'train/loss' in r}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp('distributed')
  dirs = {name: str(base / name) for name in ('one', 'mesh8', 'two_processes', 'two_stopped')}
  children = [
    T.run_launch(
      [
        *T.launch_args(overrides=OVERRIDES),
        '--config.mesh.shape=(4,2)',
        '--config.mesh.shard_min_size=256',
        f'--workdir={dirs["mesh8"]}',
      ],
      env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
      background=True,
    )
  ]

  def two_processes(faults=(None, None), workdir=dirs['two_processes']):
    port = T.free_port()
    return [
      T.run_launch(
        [
          *T.launch_args(overrides=OVERRIDES),
          f'--workdir={workdir}',
          '--multihost',
          f'--coordinator_address=localhost:{port}',
          '--num_processes=2',
          f'--process_id={pid}',
        ],
        env={'XLA_FLAGS': ''},
        background=True,
        faults=faults[pid],
      )
      for pid in range(2)
    ]

  killed = two_processes([{'kill_after_commit': 8}] * 2)
  # SIGTERM reaches process 1 alone, after step 3: the processes compare flags every 10 steps.
  stopped = two_processes([None, {'signal_after_step': [3, 'SIGTERM']}], dirs['two_stopped'])
  one = trainer.train_and_evaluate(T.get_config(overrides=OVERRIDES), dirs['one'])
  kills = []
  for child in killed:
    try:
      out, err = child.communicate(timeout=400)
    except Exception:
      child.kill()
      raise
    kills.append((child.returncode, out, err))
  steps_after_kill = T.checkpoint_steps(dirs['two_processes'])
  children += two_processes()
  children += stopped
  outputs = []
  for child in children:
    try:
      out, err = child.communicate(timeout=400)
    except Exception:
      child.kill()
      raise
    outputs.append((child.returncode, out, err))
    with open(base / f'child_{len(outputs) - 1}.log', 'w') as f:  # Kept for post-mortems.
      f.write(f'returncode {child.returncode}\n--- stdout\n{out}\n--- stderr\n{err}')
  return dirs, one, outputs, kills, steps_after_kill


def _check(runs, name, child_indices):
  dirs, one, outputs = runs[:3]
  for i in child_indices:
    code, out, err = outputs[i]
    assert code == 0, f'{name} child {i} failed (rc {code}):\n{out[-1500:]}\n{err[-3000:]}'
  config = T.get_config(overrides=OVERRIDES)
  params, step = T.restored_params(config, dirs[name], 'latest')
  assert step == 12
  T.assert_trees_equal(params, jax.device_get(one['state']['params']), exact=False, rtol=1e-4, atol=1e-5)
  reference, other = _train_losses(dirs['one']), _train_losses(dirs[name])
  assert sorted(other) == sorted(reference) == list(range(2, 13, 2))
  np.testing.assert_allclose(
    [other[s] for s in sorted(other)], [reference[s] for s in sorted(reference)], rtol=1e-5
  )
  return outputs


def test_eight_devices_on_a_data_model_mesh_match_one_device(runs):
  outputs = _check(runs, 'mesh8', [0])
  assert "mesh {'data': 4, 'model': 2}" in outputs[0][1]
  assert '8 devices' in outputs[0][1]


def test_two_processes_with_jax_distributed_match_one_process(runs):
  kills, steps_after_kill = runs[3:]
  # Each process kills itself once step 8 is committed (a process whose peer died first may instead be
  # ended by jax.distributed's heartbeat): no process exits cleanly.
  codes = [code for code, _, _ in kills]
  assert -9 in codes and 0 not in codes, [(c, e[-1500:]) for c, _, e in kills]
  assert steps_after_kill == [4, 6, 8]
  outputs = _check(runs, 'two_processes', [1, 2])
  assert 'resuming from step 8' in outputs[1][1]
  assert 'process 0/2' in outputs[1][1]
  # Only process 0 prints results and writes metrics.
  assert 'valid_bpc:' in outputs[1][1] and 'valid_bpc:' not in outputs[2][1]


def test_sigterm_to_one_process_stops_both_at_the_same_step(runs):
  dirs, _, outputs = runs[:3]
  (code0, _, err0), (code1, _, err1) = outputs[-2:]
  assert (code0, code1) == (143, 143), (err0[-2000:], err1[-2000:])
  lines = T.error_lines(err0)
  assert len(lines) == 1 and 'stopped by SIGTERM at step 10 of 12' in lines[0], lines
  assert T.error_lines(err1) == []  # Only process 0 speaks.
  assert T.checkpoint_steps(dirs['two_stopped']) == [6, 8, 10]
