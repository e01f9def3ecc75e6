"""A full tiny run whose workdir is `gs://bucket/run`, offline: every workdir file goes through etils.epath.

The bucket is a folder: fsspec's 'gcs' protocol (what epath uses for gs:// without TensorFlow) is
registered to a local file system that maps gs://<bucket>/<key> to <root>/<bucket>/<key>, and orbax's
TensorStore paths for the arrays are mapped to the same folder (orbax asks no bucket metadata). Any
`open`/`os.path` call on the workdir would instead create a relative folder named 'gs:' in the current
directory, which the test checks does not exist.
"""

import os

import fsspec
import jax
import pytest
from fsspec.implementations.local import LocalFileSystem
from orbax.checkpoint._src.path import gcs_utils
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

import trainer_testlib as T
from experiments import metrics as metrics_lib
from experiments import trainer

OVERRIDES = {**T.CHAR_OVERRIDES, 'model.cell.name': 'lstm', 'sample.length': 16}


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
        key = path[len(prefix) :]
        if ('/' + key).startswith(cls.root + '/'):  # epath's glob re-prefixes the local names we list.
          return '/' + key.rstrip('/')
        return os.path.join(cls.root, key).rstrip('/') or '/'
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
  normalize = ts_utils._normalize_path  # pylint: disable=protected-access

  def to_local(path):  # TensorStore array files: gs://<key> -> <root>/<key>.
    path = normalize(path)
    return FakeGCS._strip_protocol(path) if path.startswith('gs://') else path

  monkeypatch.setattr(ts_utils, '_normalize_path', to_local)
  # Orbax's GCS-only paths (bucket metadata, GCS commit protocol) need the network: the fake bucket
  # takes the generic path (temporary folder + rename through epath).
  monkeypatch.setattr(gcs_utils, 'is_gcs_path', lambda path: False)
  monkeypatch.setattr(gcs_utils, 'is_hierarchical_namespace_enabled', lambda path: False)
  monkeypatch.chdir(tmp_path)
  yield tmp_path / 'buckets'
  backend.fsspec_backend._get_filesystem.cache_clear()


def test_a_full_tiny_run_with_a_gs_workdir(fake_bucket, tmp_path):
  workdir = 'gs://bucket/run'
  out = trainer.train_and_evaluate(T.get_config(overrides=OVERRIDES), workdir)
  local = fake_bucket / 'bucket' / 'run'
  names = set(os.listdir(local))
  expected = {'config.json', 'run_info.json', 'metrics.jsonl', 'sample.txt', 'checkpoints', 'tensorboard'}
  assert expected <= names
  assert 'lock' not in names  # Taken and released through epath.
  assert not (tmp_path / 'gs:').exists()  # Nothing went through open()/os.path on the workdir string.
  assert any(n.startswith('events.out.tfevents') for n in os.listdir(local / 'tensorboard'))
  assert sorted(int(n) for n in os.listdir(local / 'checkpoints') if n.isdigit()) == [6, 8, 12]
  assert len((local / 'sample.txt').read_text()) == 16
  records = metrics_lib.read_metrics(workdir)
  assert [r['step'] for r in records if 'valid/bpc' in r] == [6, 12]
  # Read back through the same gs:// path: the config and the best parameters.
  config, params = trainer.load(workdir)
  assert config.model.cell.name == 'lstm'
  T.assert_trees_equal(jax.device_get(params), jax.device_get(out['state']['params']))
