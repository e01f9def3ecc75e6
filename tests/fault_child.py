"""launch.py with faults injected from the test harness (never from the config or production code).

  HYPER_TEST_FAULTS='{"kill_after_save": 6}' python tests/fault_child.py <launch.py flags>

Faults (a JSON object; steps count completed optimizer steps):
  kill_after_step: N    SIGKILL right after step N (before its evaluation and save).
  kill_after_save: N    SIGKILL right after save(N) returns (an async write may still be running).
  kill_after_commit: N  SIGKILL after save(N) is committed on disk.
  kill_before_commit: N  SIGKILL inside orbax, with step N fully written to its temporary folder, just
                        before the rename that commits it.
  damage_after_commit: N  truncate the largest array file of step N once it is committed.
  signal_after_step: [N, 'SIGTERM'|'SIGINT']  send that signal to this process after step N.
  enospc_at_save: N     the save of step N fails with OSError(ENOSPC), as on a full disk.
  nan_at_step: N        the loss is NaN when state['step'] == N (inside the jitted step, via the task).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import launch  # noqa: E402
from experiments import checkpoints as ckpt_lib  # noqa: E402
from experiments import trainer  # noqa: E402


class FaultHook(trainer.Hook):
  def __init__(self, faults: dict):
    self.faults = faults

  def after_step(self, step, state):
    if self.faults.get('kill_after_step') == step:
      os.kill(os.getpid(), signal.SIGKILL)
    sig = self.faults.get('signal_after_step')
    if sig and sig[0] == step:
      os.kill(os.getpid(), getattr(signal, sig[1]))

  def after_save(self, step, store):
    if self.faults.get('kill_after_save') == step:
      os.kill(os.getpid(), signal.SIGKILL)
    if self.faults.get('kill_after_commit') == step:
      store.wait()
      os.kill(os.getpid(), signal.SIGKILL)
    if self.faults.get('damage_after_commit') == step:
      store.wait()
      state_dir = os.fspath(store.directory / str(step) / 'state')  # A local workdir in these tests.
      files = [os.path.join(d, n) for d, _, names in os.walk(state_dir) for n in names]
      biggest = max(files, key=os.path.getsize)
      with open(biggest, 'r+b') as f:
        f.truncate(os.path.getsize(biggest) // 2)


def install(faults: dict) -> None:
  train = trainer.train_and_evaluate
  hook = FaultHook(faults)

  def with_hooks(config, workdir, **kwargs):
    return train(config, workdir, hooks=[*kwargs.pop('hooks', ()), hook], **kwargs)

  trainer.train_and_evaluate = with_hooks

  if 'kill_before_commit' in faults:
    from orbax.checkpoint._src.path import async_path  # pylint: disable=g-import-not-at-top

    rename = async_path.rename

    async def rename_or_die(src, dst, *args, **kwargs):
      if os.path.basename(os.fspath(dst)) == str(faults['kill_before_commit']):
        os.kill(os.getpid(), signal.SIGKILL)
      return await rename(src, dst, *args, **kwargs)

    async_path.rename = rename_or_die

  if 'enospc_at_save' in faults:
    save = ckpt_lib.CheckpointStore.save

    def full_disk_save(self, step, *args, **kwargs):
      if step == faults['enospc_at_save']:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.directory / str(step)))
      return save(self, step, *args, **kwargs)

    ckpt_lib.CheckpointStore.save = full_disk_save

  if 'nan_at_step' in faults:
    make_task = trainer.make_task

    def make_task_with_nan(config, **kwargs):
      import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

      task = make_task(config, **kwargs)
      loss_fn = task.loss_fn

      def nan_loss_fn(params, model_state, carry, batch, rng, step):
        loss, aux = loss_fn(params, model_state, carry, batch, rng, step)
        loss = jnp.where(step == faults['nan_at_step'], jnp.nan, loss)
        return loss, (aux[0], aux[1], dict(aux[2], loss=loss))

      task.loss_fn = nan_loss_fn
      return task

    trainer.make_task = make_task_with_nan


if __name__ == '__main__':
  install(json.loads(os.environ.get('HYPER_TEST_FAULTS', '{}')))
  sys.argv[0] = os.path.join(ROOT, 'launch.py')
  import jax  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top

  jax.config.config_with_absl()  # As launch.py's own entry point.
  app.run(launch.main, flags_parser=launch.parse_flags)
