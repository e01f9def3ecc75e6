"""Bad input to launch.py: each case exits non-zero with exactly one stderr line naming what is wrong, and
leaves the workdir as it was (sha256 of every file) or not created.

Most cases run in-process through `launch.cli(argv)` (validation ends before any jax work); the ones that
need another environment (8 fake devices, a read-only mount) or show the real process (one line on the
real stderr, --help) run `python launch.py` in a subprocess.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import launch  # noqa: E402
from configs import ptb_char  # noqa: E402
from experiments import validate  # noqa: E402

CHAR = '--config=configs/ptb_char.py:tiny'
IMAGE = '--config=configs/mnist.py:tiny'


def snapshot(directory) -> dict[str, str]:
  """path -> sha256 of every file under `directory`."""
  out = {}
  for base, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(base, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture
def run_dir(tmp_path):
  """A workdir as a ptb_char:tiny run leaves it (config.json plus files), and its snapshot."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  validate.write_config(workdir, ptb_char.get_config('tiny'))
  (workdir / 'metrics.jsonl').write_text('{"step": 10, "train_loss": 3.0}\n')
  (workdir / 'checkpoints' / '10').mkdir(parents=True)
  (workdir / 'checkpoints' / '10' / 'state').write_bytes(b'\0' * 64)
  return workdir, snapshot(workdir)


def in_process(argv, capsys):
  code = launch.cli(['launch.py', *argv])
  captured = capsys.readouterr()
  return code, captured.err


def subprocess_launch(argv, env=None, prefix=()):
  full_env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})}
  result = subprocess.run(
    [*prefix, sys.executable, os.path.join(ROOT, 'launch.py'), *argv],
    cwd=ROOT,
    env=full_env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  return result.returncode, result.stderr


def one_line(code, stderr, *needles, exit_code=2) -> str:
  assert code == exit_code, (code, stderr[-2000:])
  lines = [l for l in stderr.splitlines() if l.strip()]
  assert len(lines) == 1, stderr[-3000:]
  assert lines[0].startswith('error: ') and 'Traceback' not in lines[0]
  for needle in needles:
    assert needle in lines[0], lines[0]
  return lines[0]


# ---- the bad inputs of issue 12 ----------------------------------------------------------------------------


def test_negative_num_steps_subprocess(tmp_path):
  workdir = tmp_path / 'new'
  code, err = subprocess_launch([CHAR, '--config.train.num_steps=-5', f'--workdir={workdir}'])
  one_line(code, err, 'config.train.num_steps', '-5', 'an integer >= 1, or -1')
  assert not workdir.exists()


def test_num_steps_zero_is_refused(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process([CHAR, '--config.train.num_steps=0', f'--workdir={workdir}'], capsys),
    'config.train.num_steps',
    '0 is not allowed',
  )
  assert not workdir.exists()


def test_sample_mode_with_an_image_config(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process([IMAGE, '--mode=sample', f'--workdir={workdir}'], capsys),
    '--mode=sample',
    "'image'",
    'allowed: train, eval, summary',
  )
  assert not workdir.exists()


def test_seq_len_zero(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process([CHAR, '--config.data.seq_len=0', f'--workdir={workdir}'], capsys),
    'config.data.seq_len',
    'an integer >= 1',
  )
  assert not workdir.exists()


def test_batch_size_zero(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process([IMAGE, '--config.train.batch_size=0', f'--workdir={workdir}'], capsys),
    'config.train.batch_size',
    'an integer >= 1',
  )
  assert not workdir.exists()


def test_mesh_3x1_on_one_device(tmp_path, capsys):
  workdir = tmp_path / 'new'
  code, err = subprocess_launch(
    [IMAGE, '--config.mesh.shape=(3,1)', f'--workdir={workdir}'], env={'XLA_FLAGS': ''}
  )
  one_line(code, err, 'config.mesh.shape', '(3, 1)', 'the 1 devices', '(-1, 1)')
  assert not workdir.exists()


def test_unknown_optimizer(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process([IMAGE, '--config.train.optimizer=sgd', f'--workdir={workdir}'], capsys),
    'config.train.optimizer',
    "'sgd'",
    "'adam', 'nesterov'",
  )
  assert not workdir.exists()


def test_workdir_that_is_a_file(tmp_path, capsys):
  path = tmp_path / 'afile'
  path.write_text('keep me')
  one_line(*in_process([CHAR, f'--workdir={path}'], capsys), str(path), 'is a file')
  assert path.read_text() == 'keep me'


def _read_only_prefix(directory) -> tuple[list[str], bool]:
  """(command prefix, usable): a read-only bind mount for root (chmod does not stop root), else chmod."""
  if os.geteuid() != 0:
    os.chmod(directory, 0o555)
    return [], True
  unshare = shutil.which('unshare')
  if unshare is None:
    return [], False
  mount = ['unshare', '-m', 'sh', '-c', f'mount --bind -o ro "{directory}" "{directory}" && exec "$0" "$@"']
  usable = subprocess.run([*mount, 'true'], capture_output=True).returncode == 0
  return mount, usable


def test_read_only_workdir(run_dir):
  workdir, before = run_dir
  prefix, usable = _read_only_prefix(workdir)
  if not usable:
    pytest.skip('cannot make a read-only directory here (root without mount namespaces)')
  code, err = subprocess_launch([CHAR, f'--workdir={workdir}'], prefix=prefix)
  os.chmod(workdir, 0o755)
  one_line(code, err, f'--workdir={workdir}', 'not writable')
  assert snapshot(workdir) == before


def test_batch_12_on_8_devices(tmp_path):
  workdir = tmp_path / 'new'
  code, err = subprocess_launch(
    [IMAGE, '--config.train.batch_size=12', f'--workdir={workdir}'],
    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
  )
  one_line(code, err, 'config.train.batch_size', '12', "'data' mesh axis (8 devices)", 'multiples of 8')
  assert not workdir.exists()


def test_unknown_config_key(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process([CHAR, '--config.train.lerning_rate=0.1', f'--workdir={workdir}'], capsys),
    "unknown config key 'train.lerning_rate'",
    'train.learning_rate',
  )
  assert not workdir.exists()


def test_unknown_variant(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process(['--config=configs/ptb_char.py:ln_hyperlstm9', f'--workdir={workdir}'], capsys),
    "unknown variant 'ln_hyperlstm9'",
    'ln_hyperlstm1000_nz16',
    'tiny',
  )
  assert not workdir.exists()


def test_resume_with_a_changed_learning_rate(run_dir, capsys):
  workdir, before = run_dir
  line = one_line(
    *in_process([CHAR, '--config.train.learning_rate=0.1', f'--workdir={workdir}'], capsys),
    'train.learning_rate (0.01 -> 0.1)',
    '--allow_config_change',
  )
  assert 'model.' not in line  # Only the differing key is named.
  assert snapshot(workdir) == before


def test_eval_of_a_workdir_with_another_config(run_dir, capsys):
  workdir, before = run_dir
  line = one_line(
    *in_process(['--config=configs/enwik8.py:tiny', '--mode=eval', f'--workdir={workdir}'], capsys),
    'another config',
    'model.',
    'omit --config',
  )
  assert 'train.' not in line  # eval compares what defines the model only.
  assert snapshot(workdir) == before


def test_help_lists_the_flags():
  result = subprocess.run(
    [sys.executable, os.path.join(ROOT, 'launch.py'), '--help'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  for flag in (
    '--config:',
    '--workdir:',
    '--mode:',
    '--checkpoint:',
    '--[no]allow_config_change:',
    '--[no]multihost:',
  ):
    assert flag in result.stdout, flag
  assert '--jax_' not in result.stdout  # JAX's flags are behind --helpfull, as absl does for libraries.


# ---- more bad inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'args, needles',
  [
    (['--config.task=nope'], ['config.task', 'char_lm, handwriting, image, translation']),
    (['--config.model.cell.name=gru'], ['config.model.cell.name', "'ln_hyperlstm'"]),
    (['--config.data.name=wiki'], ['config.data.name', "'ptb_char'"]),
    (['--config.train.schedule=cosine'], ['config.train.schedule', "'constant', 'step'"]),
    (['--config.train.num_epochs=2'], ['train.num_steps (30)', 'train.num_epochs (2.0)', 'once']),
    (['--config.train.learning_rate=nan'], ['config.train.learning_rate', '> 0']),
    (['--config.eval.metric=accuracy'], ['config.eval.metric', "'bpc'"]),
    (['--config.mesh.shape=(-1,1,1)'], ['config.mesh.shape', 'one size per axis']),
    (['--config.model.cell.recurrent_dropout=1.0'], ['config.model.cell.recurrent_dropout', '< 1']),
    (['--config.eval.splits=("valid","dev")'], ['config.eval.splits', "'valid'"]),
    (['--config.train.num_steps=abc'], ['config.train.num_steps=abc']),
    (['--mode=fit'], ['--mode=fit', 'train|eval|sample|summary']),
    (['--foo=1'], ["'foo'", '--help']),
    (['extra'], ["unexpected arguments 'extra'"]),
  ],
)
def test_more_bad_values(args, needles, tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(*in_process([CHAR, *args, f'--workdir={workdir}'], capsys), *needles)
  assert not workdir.exists()


def test_wide_resnet_depth_from_the_family_rules(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process(
      ['--config=configs/cifar10.py:tiny', '--config.model.depth=12', f'--workdir={workdir}'], capsys
    ),
    'config.model.depth',
    '6n+4',
  )
  assert not workdir.exists()


def test_missing_config_file_and_overrides_without_config(tmp_path, capsys):
  workdir = tmp_path / 'new'
  one_line(
    *in_process(['--config=configs/nope.py', f'--workdir={workdir}'], capsys),
    "'configs/nope.py' not found",
    'configs/ptb_char.py',
  )
  one_line(
    *in_process(['--config.train.num_steps=5', f'--workdir={workdir}'], capsys),
    '--config.train.num_steps',
    'give --config=',
  )
  assert not workdir.exists()


def test_eval_without_a_run(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)  # The default workdir, runs/<family>_<variant>, is relative to it.
  mnist = os.path.join(ROOT, 'configs', 'mnist.py')
  one_line(*in_process([f'--config={mnist}:tiny', '--mode=eval'], capsys), 'runs/mnist_tiny does not exist')
  one_line(*in_process(['--mode=eval', f'--workdir={tmp_path / "none"}'], capsys), 'does not exist')
  (tmp_path / 'empty').mkdir()
  one_line(*in_process(['--mode=sample', f'--workdir={tmp_path / "empty"}'], capsys), 'no config.json')
  assert os.listdir(tmp_path / 'empty') == []


def test_stored_config_is_validated_and_a_corrupt_one_named(run_dir, capsys):
  workdir, _ = run_dir
  text = (workdir / 'config.json').read_text()
  (workdir / 'config.json').write_text(text.replace('"seq_len": 20', '"seq_len": -3'))
  before = snapshot(workdir)
  one_line(*in_process(['--mode=eval', f'--workdir={workdir}'], capsys), 'config.data.seq_len', '-3')
  (workdir / 'config.json').write_text(text[:50])
  before = snapshot(workdir)
  one_line(*in_process([f'--workdir={workdir}'], capsys), 'config.json cannot be read')
  assert snapshot(workdir) == before


def test_an_unexpected_failure_is_one_line_naming_its_traceback_file():
  try:
    {}['missing']
  except KeyError as e:
    line = launch._runtime_failure(e)
  assert '\n' not in line and line.startswith("KeyError: 'missing' (traceback in ")
  path = line.rsplit('traceback in ', 1)[1].rstrip(')')
  with open(path) as f:
    text = f.read()
  os.unlink(path)
  assert text.startswith('Traceback') and "{}['missing']" in text


def test_a_jax_flag_reaches_jax_and_a_backend_failure_is_one_line():
  code, err = subprocess_launch([CHAR, '--mode=summary', '--jax_platforms=tpu'])  # This machine has no TPU.
  line = one_line(code, err, "RuntimeError: Unable to initialize backend 'tpu'", 'traceback in ', exit_code=1)
  path = line.rsplit('traceback in ', 1)[1].rstrip(')')
  assert 'Traceback' in open(path).read()
  os.unlink(path)
