"""Resume after a kill is bitwise for the handwriting and translation families, as tests/test_faults.py
shows for the character models: launch.py trains a `tiny` row uninterrupted; the same command is SIGKILLed
(tests/fault_child.py) two steps after a checkpoint, rerun, and must end with the same parameters, bit
for bit, and print the same training losses and final metrics.

What the resumed run has to get back exactly: the handwriting batch at a step (lines dealt to streams per
epoch from (seed, epoch)), the ±10% scale of each line (from (seed, line id)), the recurrent state carried
from one window of a line to the next (in the train state, hence in the checkpoint: asserted non-zero at
the checkpoint, so the test exercises it); the translation batch at a step (pairs bucketed and shuffled
per epoch from (seed, epoch)), the dropout keys (folded in by step) and the SentencePiece model (trained
again, deterministically, and written with the run: the bytes are compared). Both rows use generated data
(`synthetic` lines, the `copy` task), so no data files are needed.
"""

import os
import re

import jax
import numpy as np
import pytest

import trainer_testlib as T

# 10 steps, checkpoints 4, 8, 10, one evaluation (at 10); the kill comes after step 6, so steps 5 and 6
# are lost and computed again. Checkpoints are written synchronously here, so that checkpoint 4 is on
# disk when the kill comes (an asynchronous write of a tiny state may still be running two steps later).
COMMON = {
  'train.num_steps': 10,
  'log.every_steps': 2,
  'eval.every_steps': 10,
  'checkpoint.every_steps': 4,
  'checkpoint.async_save': False,
}
CASES = {
  'handwriting': (
    'configs/handwriting.py:tiny',
    # Recurrent dropout on: its keys must also come back. No sample pictures (not what is tested).
    {**COMMON, 'model.cell.recurrent_dropout': 0.1, 'sample.length': 0},
  ),
  'translation': (
    'configs/translation.py:tiny',
    # Dropout on; greedy decoding and no translations.txt/figure keep the end-of-run work small.
    {**COMMON, 'model.dropout': 0.1, 'decode.beam_size': 1, 'sample.num_translations': 0},
  ),
}
_RESULT = re.compile(r'^((?:valid|test)_\w+): (-?[0-9.]+|nan|inf)$')
_STEP = re.compile(r'^step (\d+)/\d+ +train_loss=(\S+)')


def _results(stdout: str) -> dict[str, str]:
  """`<split>_<metric>: value` lines of the final report, as printed (4 decimals)."""
  return dict(m.groups() for m in map(_RESULT.match, stdout.splitlines()) if m)


def _train_losses(stdout: str) -> dict[int, str]:
  """step -> the training loss printed on that step's log line."""
  return {int(m[1]): m[2] for m in map(_STEP.match, stdout.splitlines()) if m}


@pytest.mark.parametrize('family', sorted(CASES))
def test_resume_after_a_kill_is_bitwise(family, tmp_path):
  config_arg, overrides = CASES[family]
  config = T.get_config(config_arg, overrides)
  args = T.launch_args(config_arg, overrides)

  reference = str(tmp_path / 'reference')
  done = T.run_launch([*args, f'--workdir={reference}'])
  assert done.returncode == 0, done.stderr[-3000:]
  ref_results, ref_losses = _results(done.stdout), _train_losses(done.stdout)
  assert sorted(ref_losses) == [2, 4, 6, 8, 10] and ref_results, done.stdout[-2000:]
  ref_params, step = T.restored_params(config, reference, 'latest')
  assert step == 10

  workdir = str(tmp_path / 'killed')
  killed = T.run_launch([*args, f'--workdir={workdir}'], faults={'kill_after_step': 6})
  assert killed.returncode == -9, (killed.returncode, killed.stderr[-3000:])  # SIGKILL
  assert T.checkpoint_steps(workdir) == [4]
  if family == 'handwriting':  # The state carried across a line's windows is saved, and it is not zero.
    from experiments import trainer  # pylint: disable=g-import-not-at-top

    _, state = trainer.restore_params(config, workdir, 'latest')
    carry = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state['carry']))]
    assert carry and any(np.abs(x).max() > 0 for x in carry)

  resumed = T.run_launch([*args, f'--workdir={workdir}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'resuming from step 4' in resumed.stdout
  losses = _train_losses(resumed.stdout)
  assert sorted(losses) == [6, 8, 10]  # Logged again from the checkpoint on: the same numbers.
  assert losses == {s: ref_losses[s] for s in losses}
  assert _results(resumed.stdout) == ref_results
  params, step = T.restored_params(config, workdir, 'latest')
  assert step == 10
  T.assert_trees_equal(params, ref_params)  # Bitwise (np.testing.assert_array_equal on every leaf).
  if family == 'translation':  # The run's SentencePiece model, written beside both runs, is the same.
    with (
      open(os.path.join(reference, 'subwords.model'), 'rb') as a,
      open(os.path.join(workdir, 'subwords.model'), 'rb') as b,
    ):
      assert a.read() == b.read()
    # experiments/translation_report.py on the two runs: a row per picked test sentence, the same
    # translation from both (equal parameters), and each run's picture.
    from experiments import translation_report  # pylint: disable=g-import-not-at-top

    out = tmp_path / 'figures'
    report = _capture(
      translation_report.main,
      [reference, workdir, '--pick', '2', '--figure-sentence', 'red cat moon', '--out', str(out)],
    )
    rows = [line.split(' | ') for line in report.splitlines()[2:]]
    assert len(rows) == 2 and all(len(r) == 4 and r[2] == r[3].rstrip(' |') for r in rows), report
    assert sorted(os.listdir(out)) == ['killed.png', 'reference.png']


def _capture(fn, argv) -> str:
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    assert fn(argv) == 0
  return buffer.getvalue()
