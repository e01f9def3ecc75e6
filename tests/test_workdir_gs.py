"""A full tiny run whose workdir is `gs://bucket/run`, offline: every workdir file goes through etils.epath.

The bucket is a folder: fsspec's 'gcs' protocol (what epath uses for gs:// without TensorFlow) is
registered to a local file system that maps gs://<bucket>/<key> to <root>/<bucket>/<key>, and orbax's
TensorStore spec for gs:// paths is pointed at the same folder. Any `open`/`os.path` call on the
workdir would instead create a relative folder named 'gs:' in the current directory, which the test
checks does not exist.
"""

import os

import fsspec
import jax
import pytest
from fsspec.implementations.local import LocalFileSystem
from orbax.checkpoint._src.path import gcs_utils

import trainer_testlib as T
from experiments import metrics as metrics_lib
from experiments import trainer

OVERRIDES = {**T.CHAR_OVERRIDES, 'model.cell': 'lstm', 'sample.length': 16}


class FakeGCS(LocalFileSystem):
  """gs://bucket/key -> <root>/bucket/key on the local disk."""

  protocol = ('gcs', 'gs')
  root = ''

  def __init__(self, *args, **kwargs):
    kwargs.pop('finalize_on_close', None)
    super().__init__(*args, **kwargs)

  @classmethod
  def _strip_protocol(cls, path):
    path = os.fspath(path)
    for prefix in ('gs://', 'gcs://'):
      if path.startswith(prefix):
        return os.path.join(cls.root, path[len(prefix):]).rstrip('/') or '/'
    return super()._strip_protocol(path)

  def unstrip_protocol(self, name):
    return 'gs://' + os.path.relpath(name, self.root)


@pytest.fixture
def fake_bucket(tmp_path, monkeypatch):
  FakeGCS.root = str(tmp_path / 'buckets')
  os.makedirs(FakeGCS.root)
  fsspec.register_implementation('gcs', FakeGCS, clobber=True)
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  backend.fsspec_backend._get_filesystem.cache_clear()
  monkeypatch.setattr('etils.epath.gpath._is_tf_installed', lambda: False)
  get_kvstore = gcs_utils.get_kvstore_for_gcs

  def local_kvstore(path):
    if path.startswith('gs://'):
      return {'driver': 'file', 'path': os.path.join(FakeGCS.root, path[len('gs://'):])}
    return get_kvstore(path)
  monkeypatch.setattr(gcs_utils, 'get_kvstore_for_gcs', local_kvstore)
  monkeypatch.chdir(tmp_path)
  yield tmp_path / 'buckets'
  backend.fsspec_backend._get_filesystem.cache_clear()


def test_a_full_tiny_run_with_a_gs_workdir(fake_bucket, tmp_path):
  workdir = 'gs://bucket/run'
  out = trainer.train_and_evaluate(T.get_config(overrides=OVERRIDES), workdir)
  local = fake_bucket / 'bucket' / 'run'
  names = set(os.listdir(local))
  assert {'config.json', 'run_info.json', 'metrics.jsonl', 'sample.txt', 'checkpoints', 'tensorboard'} <= names
  assert 'lock' not in names  # Taken and released through epath.
  assert not (tmp_path / 'gs:').exists()  # Nothing went through open()/os.path on the workdir string.
  assert any(n.startswith('events.out.tfevents') for n in os.listdir(local / 'tensorboard'))
  assert sorted(int(n) for n in os.listdir(local / 'checkpoints') if n.isdigit()) == [6, 8, 12]
  assert len((local / 'sample.txt').read_text()) == 16
  records = metrics_lib.read_metrics(workdir)
  assert [r['step'] for r in records if 'valid/bpc' in r] == [6, 12]
  # Read back through the same gs:// path: the config and the best parameters.
  config, params = trainer.load(workdir)
  assert config.model.cell == 'lstm'
  T.assert_trees_equal(jax.device_get(params), jax.device_get(out['state']['params']))
