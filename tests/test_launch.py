"""launch.py end to end: one-line errors with a non-zero exit and an untouched workdir; the modes."""

import json
import os

import pytest

import trainer_testlib as T
from experiments import checkpoints as ckpt_lib

OVERRIDES = {**T.CHAR_OVERRIDES, 'model.cell.name': 'lstm'}


def _one_line_error(result, *needles):
  assert result.returncode != 0
  lines = T.error_lines(result.stderr)
  assert len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith('error: ')
  for needle in needles:
    assert needle in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize(
  'args, needles',
  [
    (
      [T.launch_args()[0], '--config.train.lerning_rate=0.1'],
      ["'train.lerning_rate'", 'train.learning_rate'],
    ),
    (['--config=configs/ptb_char.py:ln_hyperlstm9'], ['unknown variant', 'ln_hyperlstm1000_nz16', 'tiny']),
    (
      [
        '--config=configs/ptb_char.py:tiny',
        '--config.data.name=ptb_char',
        '--config.data.manual_dir=/no/such/dir',
      ],
      ['/no/such/dir'],
    ),
  ],
)
def test_bad_config_or_missing_data_is_one_line_and_leaves_no_workdir(args, needles, tmp_path):
  workdir = tmp_path / 'run'
  result = T.run_launch(
    [*args, f'--workdir={workdir}', f'--config.data.data_dir={tmp_path / "tfds"}']
    if 'manual_dir' in ' '.join(args)
    else [*args, f'--workdir={workdir}']
  )
  _one_line_error(result, *needles)
  assert not workdir.exists()


def test_empty_corpus_is_one_line(tmp_path):
  manual = tmp_path / 'ptb'
  manual.mkdir()
  for split in ('train', 'valid', 'test'):
    (manual / f'ptb.char.{split}.txt').write_text('')
  workdir = tmp_path / 'run'
  result = T.run_launch(
    [
      '--config=configs/ptb_char.py:tiny',
      '--config.data.name=ptb_char',
      f'--config.data.manual_dir={manual}',
      f'--config.data.data_dir={tmp_path / "tfds"}',
      f'--workdir={workdir}',
    ]
  )
  _one_line_error(result, 'empty')
  assert not workdir.exists()


def test_summary_prints_the_paper_parameter_count_without_training():
  result = T.run_launch(
    [
      '--config=configs/enwik8.py:ln_hyperlstm2048',
      '--mode=summary',
      '--workdir=/nonexistent/never/created',
      '--jax_debug_nans=false',  # JAX's flags go through absl.
    ]
  )
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  total = int(next(line for line in lines if line.startswith('total_params: ')).split(': ')[1])
  assert round(total / 1e6, 2) == 26.54  # Table 4: 26.54M for the 2048-unit LN HyperLSTM.
  assert lines[-2:] == ['paper_params: 26.54M', 'paper_test: 1.340 bpc']
  assert 'softmax/kernel' in result.stdout and '(2048, 205)' in result.stdout
  assert not os.path.exists('/nonexistent/never/created')


def test_nan_stops_with_the_step_then_eval_sample_and_a_corrupt_only_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  # NaN at step 5: checkpoint 4 was saved; the guard (read at step 6's log) names step 5.
  result = T.run_launch(
    [*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'], faults={'nan_at_step': 5}
  )
  _one_line_error(result, 'NaN or Inf at step 5', 'last good checkpoint is step 4')
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert ckpt_lib.CheckpointStore(checkpoints, keep=3).steps() == [4]

  # The kept checkpoint is good: --mode=eval (the workdir alone: its config.json) and --mode=sample use it.
  result = T.run_launch([f'--workdir={workdir}', '--mode=eval', '--checkpoint=latest'])
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert [l.split(':')[0] for l in lines[-4:]] == ['valid_loss', 'valid_bpc', 'test_loss', 'test_bpc']
  result = T.run_launch(
    [
      *T.launch_args(overrides=OVERRIDES),
      f'--workdir={workdir}',
      '--mode=sample',
      '--checkpoint=latest',
      '--config.sample.length=30',
      '--config.sample.prime=ab',
    ]
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith('ab')

  # Its only checkpoint truncated: training refuses to restart from scratch and changes nothing.
  T.truncate_largest_file(os.path.join(checkpoints, '4'))
  before = T.tree_snapshot(workdir)
  result = T.run_launch([*T.launch_args(overrides=OVERRIDES), f'--workdir={workdir}'])
  _one_line_error(result, 'none is valid')
  assert T.tree_snapshot(workdir) == before


def test_resume_config_changes_are_refused_or_recorded(tmp_path):
  workdir = str(tmp_path / 'run')
  result = T.run_launch(
    [*T.launch_args(overrides={**OVERRIDES, 'train.num_steps': 8}), f'--workdir={workdir}']
  )
  assert result.returncode == 0, result.stderr[-2000:]

  # A longer run is a run-length change (accepted, recorded); another learning rate needs the flag and is
  # recorded apart. config.json follows both.
  result = T.run_launch(
    [
      *T.launch_args(overrides={**OVERRIDES, 'train.num_steps': 12}),
      f'--workdir={workdir}',
      '--config.train.learning_rate=0.02',
    ]
  )
  assert result.returncode == 2 and 'train.learning_rate (0.01 -> 0.02)' in result.stderr
  result = T.run_launch(
    [
      *T.launch_args(overrides={**OVERRIDES, 'train.num_steps': 12}),
      f'--workdir={workdir}',
      '--config.train.learning_rate=0.02',
      '--allow_config_change',
    ]
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'resuming from step 8 of 12' in result.stdout
  changes = [json.loads(l) for l in open(os.path.join(workdir, 'config_changes.jsonl'))]
  assert [(c['reason'], c['changes']) for c in changes] == [
    ('run length', {'train.num_steps': [8, 12]}),
    ('--allow_config_change', {'train.learning_rate': [0.01, 0.02]}),
  ]
  stored = json.load(open(os.path.join(workdir, 'config.json')))
  assert (stored['train']['num_steps'], stored['train']['learning_rate']) == (12, 0.02)
