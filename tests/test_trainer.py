"""The train loop: traced once, exact resume after SIGKILL, checksum fallback, every family learns."""

import os
import signal

import jax
import numpy as np
import pytest

import trainer_testlib as T
from experiments import checkpoints as ckpt_lib
from experiments import metrics as metrics_lib
from experiments import trainer

# The mechanics tests use a plain LSTM: quick to compile, and the loop does not care about the cell.
OVERRIDES = {**T.CHAR_OVERRIDES, 'model.cell.name': 'lstm', 'sample.length': 20}
# The reference run also draws the Figure 4 weight-change picture (PNG + SVG, and in TensorBoard).
FIGURES = {'plots.weight_change': True, 'plots.length': 30}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """One uninterrupted 12-step run (checkpoints at 4, 8, 12, evaluations at 6, 12), shared below."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  with T.TraceCounter() as traces:
    out = trainer.train_and_evaluate(T.get_config(overrides={**OVERRIDES, **FIGURES}), workdir)
  return workdir, dict(out, traces=traces.count)


def test_uninterrupted_run_traces_once_learns_and_fills_the_workdir(reference):
  workdir, out = reference
  assert out['traces'] == 1  # One compilation of the train step over the whole run.
  losses = T.train_losses(workdir)
  assert sorted(losses) == [2, 4, 6, 8, 10, 12] and losses[12] + losses[10] < losses[2] + losses[4]
  for name in ('config.json', 'run_info.json', 'metrics.jsonl'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  records = metrics_lib.read_metrics(workdir)
  assert [r['step'] for r in records if 'valid/bpc' in r] == [6, 12]
  assert [r['train/learning_rate'] for r in records if 'train/learning_rate' in r] == [0.01] * 6
  assert any('final_test/bpc' in r for r in records)
  # One manager: the newest 3 steps (the improved evaluation at 6 was saved too); 4 was deleted.
  assert T.checkpoint_steps(workdir) == [6, 8, 12]
  assert not os.path.exists(os.path.join(workdir, 'lock'))  # Released at the end.
  # TensorBoard: hyperparameters, learning rate, the sampled text (the char task's artifact).
  tags = T.tensorboard_tags(workdir)
  assert {'train/loss', 'train/learning_rate', 'valid/bpc', 'final_test/bpc'} <= tags['scalar']
  assert tags['hparams'] and 'config' in {t.split('/')[0] for t in tags['text']}
  assert any(t.startswith('sample') for t in tags['text']), tags['text']
  assert open(os.path.join(workdir, 'weight_change.png'), 'rb').read(4) == b'\x89PNG'
  assert 'weight_change.png' in tags['image'], tags['image']
  assert set(out['results']) == {'valid', 'test'}
  bpc = out['results']['valid']['bpc']
  assert bpc == pytest.approx(out['results']['valid']['loss'] / np.log(2))
  assert len(open(os.path.join(workdir, 'sample.txt')).read()) == 20
  # load() gives the config and the best checkpoint's parameters (for notebooks and sampling).
  loaded_config, params = trainer.load(workdir)
  assert loaded_config.model.cell.name == 'lstm' and tuple(loaded_config.mesh.axes) == ('data', 'model')
  best_params, best_step = T.restored_params(T.get_config(overrides=OVERRIDES), workdir, 'best')
  assert best_step == 12  # The validation bpc fell at every evaluation.
  T.assert_trees_equal(jax.device_get(params), best_params)


def test_sigkill_then_resume_ends_bitwise_equal_and_corrupt_latest_falls_back(reference, tmp_path, capsys):
  ref_dir, ref = reference
  workdir = str(tmp_path / 'killed')
  # The child SIGKILLs itself right after step 5 (synchronous saves: checkpoint 4 is surely committed)
  # and leaves its lock behind; the resumed run takes the stale lock over and must end bitwise equal to
  # the reference.
  killed = T.run_launch(
    [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}', '--config.checkpoint.async_save=False'],
    faults={'kill_after_step': 5},
  )
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert T.checkpoint_steps(workdir) == [4]
  assert os.path.exists(os.path.join(workdir, 'lock'))

  with T.TraceCounter() as traces:
    resumed = trainer.train_and_evaluate(T.get_config(overrides=OVERRIDES), workdir)
  captured = capsys.readouterr()
  assert 'resuming from step 4' in captured.out and 'taking over the lock' in captured.err
  assert traces.count == 1
  T.assert_trees_equal(jax.device_get(resumed['state']['params']), jax.device_get(ref['state']['params']))
  T.assert_trees_equal(
    jax.device_get(resumed['state']['opt_state']), jax.device_get(ref['state']['opt_state'])
  )

  # Truncate a data file of the newest step: restore says so in one line and uses step 8.
  T.truncate_largest_file(os.path.join(workdir, 'checkpoints', '12'))
  config = T.get_config(overrides=OVERRIDES)
  runner = trainer.Runner(config)
  state, meta = trainer.open_store(runner, trainer.workdir_lib.as_path(workdir)).restore_latest(
    runner.abstract_with_shardings()
  )
  assert meta['step'] == 8 and int(state['step']) == 8
  err = capsys.readouterr().err
  assert 'checkpoint step 12' in err and 'falling back' in err
  # The damaged step is set aside, not deleted, and never overwritten in place.
  assert os.path.isdir(os.path.join(workdir, 'damaged', 'checkpoints-12'))
  ref_params, ref_step = T.restored_params(config, ref_dir, 'latest')
  assert ref_step == 12


def test_checksum_catches_silent_corruption(tmp_path):
  """A bit flipped inside a stored array (restorable by orbax) fails the sha256 check."""
  import jax.numpy as jnp

  store = ckpt_lib.CheckpointStore(str(tmp_path / 'ck'), keep=3, async_save=False)
  good = {'w': jnp.arange(64, dtype=jnp.float32)}
  store.save(1, good)
  store.save(2, {'w': good['w'] + 1})
  meta_path = os.path.join(str(tmp_path / 'ck'), '2', 'meta', 'metadata')
  text = open(meta_path).read()
  import json

  meta = json.loads(text)
  meta['sha256'] = '0' * 64  # Stands in for arrays that no longer match what was saved.
  open(meta_path, 'w').write(json.dumps(meta))
  abstract = {'w': jax.ShapeDtypeStruct((64,), jnp.float32, sharding=good['w'].sharding)}
  state, meta = store.restore_latest(abstract)
  assert meta['step'] == 1 and float(state['w'][1]) == 1.0
  # Nothing valid at all: an error, never a silent restart.
  os.makedirs(str(tmp_path / 'ck2'))
  store2 = ckpt_lib.CheckpointStore(str(tmp_path / 'ck2'), keep=3, async_save=False)
  store2.save(1, good)
  open(os.path.join(str(tmp_path / 'ck2'), '1', 'meta', 'metadata'), 'w').write('{"sha256": "x"}')
  with pytest.raises(ckpt_lib.CheckpointError, match='none is valid'):
    store2.restore_latest(abstract)
