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
OVERRIDES = {**T.CHAR_OVERRIDES, 'model.cell': 'lstm', 'sample.length': 20}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """One uninterrupted 12-step run (checkpoints at 4, 8, 12), shared by the tests below."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  out = trainer.train_and_evaluate(T.get_config(overrides=OVERRIDES), workdir)
  return workdir, out


def test_uninterrupted_run_traces_once_learns_and_fills_the_workdir(reference):
  workdir, out = reference
  assert out['traces'] == 1  # One compilation of the train step over the whole run.
  losses = [loss for _, loss in out['train_losses']]
  assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
  for name in ('config.json', 'run_info.json', 'metrics.jsonl'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  records = metrics_lib.read_metrics(workdir)
  assert [r['step'] for r in records if 'valid/bpc' in r] == [6, 12]
  assert any('final_test/bpc' in r for r in records)
  assert sorted(ckpt_lib.CheckpointStore(os.path.join(workdir, 'checkpoints'), keep=3).steps()) == [4, 8, 12]
  assert set(out['results']) == {'valid', 'test'}
  bpc = out['results']['valid']['bpc']
  assert bpc == pytest.approx(out['results']['valid']['loss'] / np.log(2))
  assert len(open(os.path.join(workdir, 'sample.txt')).read()) == 20
  # load() gives the config and the best checkpoint's parameters (for notebooks and sampling).
  loaded_config, params = trainer.load(workdir)
  assert loaded_config.model.cell == 'lstm' and tuple(loaded_config.mesh.axes) == ('data', 'model')
  best_params, best_step = T.restored_params(T.get_config(overrides=OVERRIDES), workdir, 'best')
  assert best_step == 12  # The validation bpc fell at every evaluation.
  T.assert_trees_equal(jax.device_get(params), best_params)


def test_sigkill_then_resume_ends_bitwise_equal_and_corrupt_latest_falls_back(reference, tmp_path, capsys):
  ref_dir, ref = reference
  workdir = str(tmp_path / 'killed')
  # The child SIGKILLs itself right after step 6: periodic checkpoint 4 is saved, and so (synchronous
  # saves here, to make it certain) is the best checkpoint of the step-6 evaluation, which the resumed
  # run must replace rather than trip over.
  killed = T.run_launch([*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}',
                         '--config.debug.kill_at_step=6', '--config.checkpoint.async_save=False'])
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  store = ckpt_lib.CheckpointStore(os.path.join(workdir, 'checkpoints'), keep=3)
  assert store.steps() == [4]
  assert ckpt_lib.CheckpointStore(os.path.join(workdir, 'checkpoints', 'best'), keep=1).steps() == [6]

  resumed = trainer.train_and_evaluate(T.get_config(overrides=OVERRIDES), workdir)
  assert 'resuming from step 4' in capsys.readouterr().out
  assert resumed['traces'] == 1
  T.assert_trees_equal(jax.device_get(resumed['state']['params']), jax.device_get(ref['state']['params']))
  T.assert_trees_equal(jax.device_get(resumed['state']['opt_state']),
                       jax.device_get(ref['state']['opt_state']))

  # Truncate a data file of the newest step: restore says so in one line and uses step 8.
  T.truncate_largest_file(os.path.join(workdir, 'checkpoints', '12'))
  config = T.get_config(overrides=OVERRIDES)
  runner = trainer.Runner(config)
  state, meta = ckpt_lib.CheckpointStore(os.path.join(workdir, 'checkpoints'), keep=3).restore_latest(
      runner.abstract_with_shardings())
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
