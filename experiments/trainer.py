"""The one train loop for every family: state pytree, mesh, jitted step, checkpoints, evaluation.

The train state is one dict pytree -- step, params, opt_state, model_state (e.g. batch_stats), carry (the
recurrent state carried between batches), rng and nonfinite_step (the first step whose loss or gradient
was NaN/Inf, -1 if none) -- whose shapes come from `jax.eval_shape` and shardings from named mesh axes.
Batches are stateless by step, so `state['step']` is also the data position and a restored state resumes
exactly. The NaN guard lives inside the jitted step (no update on a non-finite step, the step recorded in
the state) and is read only when logging, evaluating or checkpointing: no host sync per step.

The trainer knows no family: `config.task = '<name>'` selects `experiments/tasks/<name>.py` (see
experiments/tasks/base.py), which supplies the model, data, loss, metrics, samples and figures.
Workdirs are etils.epath paths (local or gs://); one writer at a time (a lock); SIGTERM/SIGINT save at
the next step boundary and stop; a full disk stops with one line and an intact last checkpoint.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import linen as nn
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import checkpoints as ckpt_lib
from experiments import metrics as metrics_lib
from experiments import workdir as workdir_lib
from experiments.tasks import base as tasks_base
from hyper import partitioning

# optax.tree.norm where it exists (newer optax deprecates optax.global_norm), else the old name.
_global_norm = getattr(getattr(optax, 'tree', None), 'norm', None) or optax.global_norm


class TrainingDiverged(ckpt_lib.RunError):
  """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


class Stopped(SystemExit):
  """SIGTERM or SIGINT stopped training after saving; exits with 128 + the signal number, no traceback.

  The one-line message has already been printed to stderr (process 0) when this is raised."""

  def __init__(self, message: str, code: int):
    super().__init__(code)
    self.message = message


class Hook:
  """Callbacks into the train loop, for tests and tools (fault injection, extra logging).

  Subclass and override; the loop calls every hook's methods in order."""

  def after_step(self, step: int, state: dict) -> None:
    """After the optimizer step that made `state['step'] == step` (before eval and save)."""

  def after_save(self, step: int, store: ckpt_lib.CheckpointStore) -> None:
    """After `store.save(step, ...)` returned (with async saves the write may still be running)."""


# ---- durations, optimizer ----------------------------------------------------------------------


def to_steps(*, steps: float = -1, epochs: float = -1, steps_per_epoch: int) -> int:
  """The one place a duration given in steps or in epochs becomes a step count."""
  if steps is not None and steps >= 0:
    if epochs is not None and epochs >= 0:
      raise ValueError(f'give a duration in steps ({steps}) or in epochs ({epochs}), not both')
    return int(steps)
  if epochs is None or epochs < 0:
    raise ValueError('a duration needs steps or epochs (both are unset)')
  return int(round(epochs * steps_per_epoch))


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  return to_steps(
    steps=config.train.num_steps, epochs=config.train.num_epochs, steps_per_epoch=steps_per_epoch
  )


def learning_rate_schedule(train: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Step -> learning rate: constant, or multiplied by decay_factor at each of decay_epochs."""
  if train.schedule == 'constant':
    return optax.constant_schedule(train.learning_rate)
  if train.schedule == 'step':
    boundaries = {
      to_steps(epochs=e, steps_per_epoch=steps_per_epoch): train.decay_factor for e in train.decay_epochs
    }
    return optax.piecewise_constant_schedule(train.learning_rate, boundaries)
  raise ValueError(f'unknown schedule {train.schedule!r}; use constant or step')


def make_optimizer(train: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """Clipping, coupled weight decay, Adam or Nesterov SGD, constant or step learning rate."""
  learning_rate = learning_rate_schedule(train, steps_per_epoch)
  chain = []
  if train.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(train.grad_clip_norm))
  if train.weight_decay > 0:
    chain.append(optax.add_decayed_weights(train.weight_decay))  # L2 in the gradient (WRN recipe)
  if train.optimizer == 'adam':
    chain.append(optax.adam(learning_rate))
  elif train.optimizer == 'nesterov':
    chain.append(optax.sgd(learning_rate, momentum=train.momentum, nesterov=True))
  else:
    raise ValueError(f'unknown optimizer {train.optimizer!r}; use adam or nesterov')
  return optax.chain(*chain)


# ---- mesh and shardings --------------------------------------------------------------------------


def make_mesh(mesh_config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """`jax.make_mesh` over config.mesh.axes; a -1 in config.mesh.shape takes the remaining devices."""
  shape = list(mesh_config.shape)
  count = jax.device_count()
  if shape.count(-1) > 1:
    raise ValueError(f'mesh.shape {tuple(shape)} may hold at most one -1')
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    shape[shape.index(-1)] = count // known
  if math.prod(shape) != count:
    raise ValueError(f'mesh.shape {tuple(mesh_config.shape)} does not cover the {count} devices')
  return jax.make_mesh(
    tuple(shape), tuple(mesh_config.axes), axis_types=(jax.sharding.AxisType.Auto,) * len(shape)
  )


def _param_spec(x, mesh: jax.sharding.Mesh, min_size: int) -> P:
  """Replicated, except big kernels whose last axis splits evenly along a 'model' axis of size > 1."""
  model = mesh.shape.get('model', 1)
  if model > 1 and x.ndim >= 2 and x.size >= min_size and x.shape[-1] % model == 0:
    return P(*([None] * (x.ndim - 1)), 'model')
  return P()


def _batch_spec(x, mesh: jax.sharding.Mesh) -> P:
  data = mesh.shape.get('data', 1)
  if x.ndim >= 1 and x.shape[0] % data == 0:
    return P('data')
  return P()


def _is_named(x) -> bool:
  return isinstance(x, nn.LogicallyPartitioned)


def state_shardings(abstract_state: dict, mesh: jax.sharding.Mesh, min_size: int) -> dict:
  """NamedSharding per state leaf: parameters (and their optimizer moments) by their logical axis names
  through `hyper.partitioning.DEFAULT_RULES`; unnamed ones by size (`_param_spec`); the carry by batch."""
  named = lambda spec: NamedSharding(mesh, spec)

  def param_sharding(x):
    if _is_named(x):  # The box keeps its names; its one leaf becomes the sharding.
      return x.replace_boxed(named(partitioning.mesh_specs(x, mesh)))
    return named(_param_spec(x, mesh, min_size))

  shardings = {k: jax.tree.map(lambda _: named(P()), v) for k, v in abstract_state.items()}
  for key in ('params', 'opt_state', 'model_state'):
    shardings[key] = jax.tree.map(param_sharding, abstract_state[key], is_leaf=_is_named)
  shardings['carry'] = jax.tree.map(lambda x: named(_batch_spec(x, mesh)), abstract_state['carry'])
  return shardings


def global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles every process's rows into global arrays sharded along 'data'."""
  sharding = NamedSharding(mesh, P('data'))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


# ---- state and steps ---------------------------------------------------------------------------


def init_state(task, tx: optax.GradientTransformation, seed: int, batch_size: int) -> dict:
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
  params, model_state = task.init_variables(init_rng)
  return {
    'step': jnp.int32(0),
    'params': params,
    'opt_state': tx.init(params),
    'model_state': model_state,
    'carry': task.init_carry(batch_size),
    'rng': train_rng,
    'nonfinite_step': jnp.int32(-1),
  }


def train_step(state: dict, batch: dict, *, task, tx) -> tuple[dict, dict]:
  """One optimizer step; skips the update (and records the step) when loss or gradients are not finite."""
  step = state['step']
  rng = jax.random.fold_in(state['rng'], step)

  def loss_fn(params):
    return task.loss_fn(params, state['model_state'], state['carry'], batch, rng, step)

  (loss, (model_state, carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  grad_norm = _global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (state['nonfinite_step'] < 0)
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = {
    'step': step + 1,
    'params': keep(params, state['params']),
    'opt_state': keep(opt_state, state['opt_state']),
    'model_state': keep(model_state, state['model_state']),
    'carry': keep(carry, state['carry']),
    'rng': state['rng'],
    'nonfinite_step': jnp.where((state['nonfinite_step'] < 0) & ~finite, step, state['nonfinite_step']),
  }
  return new_state, dict(metrics, grad_norm=grad_norm)


def eval_step(params, model_state, carry, batch, *, task):
  return task.eval_step(params, model_state, carry, batch)


class Runner:
  """Task, mesh, optimizer, abstract state and jitted functions of one configuration."""

  def __init__(self, config: ml_collections.ConfigDict, task=None):
    self.config = config
    self.task = task if task is not None else make_task(config)
    self.eval_splits = tuple(config.eval.get('splits') or self.task.eval_splits())
    # Test sets a task adds on request (translation's eval.extra_test) are reported beside eval.splits.
    extra = getattr(self.task, 'extra_test_splits', ())
    self.eval_splits += tuple(s for s in extra if s not in self.eval_splits)
    unknown = [s for s in self.eval_splits if s not in self.task.eval_splits()]
    if unknown:
      raise ValueError(
        f'config.eval.splits has {", ".join(map(repr, unknown))}; this task evaluates '
        f'{", ".join(self.task.eval_splits())}'
      )
    self.valid_split = self.task.eval_splits()[0]  # Picks the best checkpoint and drives early stopping.
    self.mesh = make_mesh(config.mesh)
    self.tx = make_optimizer(config.train, self.task.steps_per_epoch)
    self.num_steps = num_train_steps(config, self.task.steps_per_epoch)
    init = functools.partial(init_state, self.task, self.tx, config.seed, config.train.batch_size)
    self.abstract_state = jax.eval_shape(init)
    self.shardings = state_shardings(self.abstract_state, self.mesh, config.mesh.shard_min_size)
    self._init = jax.jit(init, out_shardings=self.shardings)
    batch_sharding = NamedSharding(self.mesh, P('data'))
    replicated = NamedSharding(self.mesh, P())
    self.train_step = jax.jit(
      functools.partial(train_step, task=self.task, tx=self.tx),
      in_shardings=(self.shardings, batch_sharding),
      out_shardings=(self.shardings, replicated),
      donate_argnums=0,
    )
    eval_carry = jax.eval_shape(functools.partial(self.task.init_carry, self.task.eval_batch_size()))
    self.eval_carry_shardings = jax.tree.map(
      lambda x: NamedSharding(self.mesh, _batch_spec(x, self.mesh)), eval_carry
    )
    self._eval_carry = jax.jit(
      functools.partial(self.task.init_carry, self.task.eval_batch_size()),
      out_shardings=self.eval_carry_shardings,
    )
    self.eval_step = jax.jit(
      functools.partial(eval_step, task=self.task),
      in_shardings=(
        self.shardings['params'],
        self.shardings['model_state'],
        self.eval_carry_shardings,
        batch_sharding,
      ),
      out_shardings=(self.eval_carry_shardings, replicated),
    )

  def abstract_with_shardings(self):
    return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), self.abstract_state, self.shardings
    )

  def init(self) -> dict:
    return self._init()

  def evaluate(self, params, model_state, split: str) -> dict[str, float]:
    """The task's metrics of `split` (by default the additive loop below over task.eval_step)."""
    return self.task.evaluate(
      params, model_state, split, functools.partial(self.additive_evaluate, params, model_state)
    )

  def additive_evaluate(self, params, model_state, split: str) -> dict[str, float]:
    carry, sums = self._eval_carry(), None
    batches = metrics_lib.progress(
      self.task.eval_batches(split), self.task.num_eval_batches(split), f'eval {split}'
    )
    for batch in batches:
      carry, batch_sums = self.eval_step(params, model_state, carry, global_batch(batch, self.mesh))
      sums = batch_sums if sums is None else jax.tree.map(jnp.add, sums, batch_sums)
    if sums is None:
      raise ValueError(f'split {split!r} gave no eval batches')
    return self.task.eval_metrics(jax.device_get(sums))


def make_task(config: ml_collections.ConfigDict, *, load_data: bool = True):
  """`experiments.tasks.<config.task>.make_task(config, process_index, process_count, load_data=...)`."""
  return tasks_base.make_task(config, jax.process_index(), jax.process_count(), load_data=load_data)


# ---- workdir bookkeeping -------------------------------------------------------------------------


def param_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def _git_commit() -> str:
  try:
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
      ['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True, timeout=10
    )
    return result.stdout.strip() if result.returncode == 0 else 'unknown (no commit yet)'
  except (OSError, subprocess.SubprocessError):
    return 'unknown'


def _versions() -> dict[str, str]:
  out = {'python': sys.version.split()[0]}
  for name in (
    'jax',
    'jaxlib',
    'flax',
    'optax',
    'orbax-checkpoint',
    'ml-collections',
    'numpy',
    'tensorflow-datasets',
    'tensorboardX',
    'etils',
  ):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = 'absent'
  return out


def write_run_info(
  config: ml_collections.ConfigDict, workdir: str | epath.Path, params_abstract, data_source: str = ''
) -> None:
  """config.json and run_info.json (parameter count, data source, git commit, versions, devices, seed)."""
  if jax.process_index() != 0:
    return
  workdir = workdir_lib.as_path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))
  info = {
    'param_count': param_count(params_abstract),
    'data_source': data_source,
    'git_commit': _git_commit(),
    'versions': _versions(),
    'seed': config.seed,
    'process_count': jax.process_count(),
    'devices': [str(d) for d in jax.devices()],
    'time': time.time(),
    'argv': sys.argv,
  }
  (workdir / 'run_info.json').write_text(json.dumps(info, indent=2))


def print_results(results: dict[str, dict[str, float]]) -> None:
  for split, values in results.items():
    for name, value in values.items():
      metrics_lib.console(f'{split}_{name}: {value:.4f}')


def open_store(runner: Runner, workdir: epath.Path, read_only: bool = False) -> ckpt_lib.CheckpointStore:
  """The run's one checkpoint manager: newest config.checkpoint.keep steps plus the best evaluated one."""
  config = runner.config
  return ckpt_lib.CheckpointStore(
    workdir / 'checkpoints',
    keep=config.checkpoint.keep,
    best_metric=runner.task.main_metric,
    higher_is_better=runner.task.metric_higher_is_better,
    async_save=config.checkpoint.get('async_save', True) and not read_only,
    read_only=read_only,
  )


# ---- train, evaluate, load ----------------------------------------------------------------------


def _diverged(step: int, store: ckpt_lib.CheckpointStore) -> TrainingDiverged:
  steps = store.steps()
  last = f'step {steps[-1]} in {store.directory}' if steps else 'none (no checkpoint was saved)'
  return TrainingDiverged(
    f'the loss became NaN or Inf at step {step}; stopped; the last good checkpoint is {last}'
  )


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | epath.Path, *, task=None, hooks: Sequence[Hook] = ()
) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it holds checkpoints), then evaluates the best checkpoint.

  task: a ready Task (default: made from config.task); hooks: `Hook`s called by the loop.
  Returns {'results': {split: metrics}, 'state': final train state, 'best_step': step reported}.
  Raises RunError subclasses (one-line messages) and `Stopped` after SIGTERM/SIGINT.
  """
  runner = Runner(config, task)  # Loads the data first: bad data fails before the workdir is touched.
  workdir = workdir_lib.as_path(workdir)
  lock = workdir_lib.Lock(workdir)
  lock.acquire()
  progress = {'step': None}
  store = None
  try:
    store = open_store(runner, workdir)
    sync_every = config.get('checkpoint', {}).get('stop_sync_every_steps', 10)
    with workdir_lib.StopSignals(sync_every=sync_every) as signals:
      return _train(runner, workdir, store, signals, hooks, progress)
  except Exception as e:
    if not workdir_lib.is_disk_full(e):
      raise
    raise _disk_full(workdir, store, progress['step']) from None
  finally:
    lock.release()


def _disk_full(workdir: epath.Path, store, step) -> workdir_lib.DiskFull:
  last = 'none'
  if store is not None:
    try:
      store.close()
    except Exception:  # The failed write may re-raise here; the message below says what matters.
      pass
    try:
      steps = store.steps()
      last = f'step {steps[-1]}' if steps else 'none'
    except Exception:
      last = 'unknown'
  at = f' at step {step}' if step is not None else ''
  return workdir_lib.DiskFull(
    f'no space left on the device of {workdir}{at}; stopped; the last intact '
    f'checkpoint is {last}: free space, then run the same command to resume'
  )


def _train(
  runner: Runner,
  workdir: epath.Path,
  store: ckpt_lib.CheckpointStore,
  signals: workdir_lib.StopSignals,
  hooks: Sequence[Hook],
  progress: dict,
) -> dict[str, Any]:
  config, task, num_steps = runner.config, runner.task, runner.num_steps
  main, higher = task.main_metric, task.metric_higher_is_better
  restored = store.restore_latest(runner.abstract_with_shardings())
  if restored is None:
    state, meta = runner.init(), {}
    source = task.data_source
    write_run_info(config, workdir, runner.abstract_state['params'], source)
    metrics_lib.console(
      f'training {config.get("variant") or config.task} from scratch: '
      f'{param_count(runner.abstract_state["params"]):,} parameters, '
      f'{"data " + source + ", " if source else ""}{num_steps} steps '
      f'({task.steps_per_epoch} per epoch) on {jax.device_count()} devices, '
      f'mesh {dict(runner.mesh.shape)}'
    )
  else:
    state, meta = restored
    metrics_lib.console(f'resuming from step {meta["step"]} of {num_steps} ({store.directory})')
  best_value = meta.get('best_value')
  bad_evals = meta.get('bad_evals', 0)
  better = lambda a, b: b is None or (a > b if higher else a < b)
  writer = metrics_lib.MetricWriter(workdir)
  writer.write_hparams(
    config,
    [f'train/{main}', f'{runner.valid_split}/{main}', *(f'final_{s}/{main}' for s in runner.eval_splits)],
  )
  learning_rate = learning_rate_schedule(config.train, task.steps_per_epoch)
  start = int(jax.device_get(state['step']))
  progress['step'] = start
  meter = metrics_lib.RateMeter(start, num_steps, task.units_per_step, task.unit)
  pending: list[dict] = []  # Device metrics since the last log line (fetched once per log).
  stop_early = False
  saved_step = start if restored is not None else None
  last_valid: tuple[int, dict] | None = None  # (step, metrics) of the newest validation pass.
  patience = config.eval.patience

  def check_finite():
    nonfinite = int(jax.device_get(state['nonfinite_step']))
    if nonfinite >= 0:
      store.wait()
      raise _diverged(nonfinite, store)

  def save(step, metrics=None):
    nonlocal saved_step
    writer.flush()  # metrics.jsonl up to this step before the checkpoint that resumes from it.
    store.save(step, state, {'best_value': best_value, 'bad_evals': bad_evals}, metrics=metrics)
    saved_step = step
    for hook in hooks:
      hook.after_save(step, store)

  if 0 < patience <= bad_evals:  # This run already stopped early; go to the report.
    num_steps = start
  for step in range(start, num_steps):
    t0 = time.time()
    state, step_metrics = runner.train_step(state, global_batch(task.train_batch(step), runner.mesh))
    done = step + 1
    progress['step'] = done
    pending.append(step_metrics)
    if step == start:  # The first call compiles: report that once, and keep it out of the rates.
      jax.block_until_ready(step_metrics)
      metrics_lib.console(f'compiled and ran the first train step in {time.time() - t0:.1f} s')
      meter.reset(done)
    for hook in hooks:
      hook.after_step(done, state)
    last = done == num_steps
    do_log = done % config.log.every_steps == 0 or last
    do_eval = done % config.eval.every_steps == 0 or last
    do_save = done % config.checkpoint.every_steps == 0 or last
    if do_log or do_eval or do_save:
      check_finite()
    if do_log:
      window = jax.device_get(pending)
      means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
      rates = meter.rates(done)
      writer.write(
        done,
        {
          **means,
          **rates,
          'epoch': done / task.steps_per_epoch,
          'learning_rate': float(learning_rate(done - 1)),
        },
        prefix='train/',
      )
      shown = f'train_{main}={means[main]:.4f}' if main in means and main != 'loss' else ''
      metrics_lib.console(
        f'step {done}/{num_steps}  train_loss={means["loss"]:.4f} {shown}  '
        f'{rates["steps_per_s"]:.2f} steps/s  {rates[f"{task.unit}_per_s"]:,.0f} {task.unit}/s  '
        f'ETA {metrics_lib.format_duration(rates["eta_s"])}'
      )
      pending = []
    valid = None
    if do_eval:
      valid = runner.evaluate(state['params'], state['model_state'], runner.valid_split)
      last_valid = (done, valid)
      writer.write(done, valid, prefix=f'{runner.valid_split}/')
      improved = better(valid[main], best_value)
      if improved:
        best_value, bad_evals = valid[main], 0
      else:
        bad_evals += 1
      metrics_lib.console(
        f'step {done}  {runner.valid_split}_loss={valid["loss"]:.4f} '
        f'{runner.valid_split}_{main}={valid[main]:.4f}{"  (best)" if improved else ""}'
      )
      stop_early = patience > 0 and bad_evals >= patience and not last
      # An improved evaluation is saved with its metrics: "best" is a view of the committed steps.
      do_save = do_save or improved
      meter.reset(done)
    stop = signals.should_stop(done)
    if do_save or stop_early or stop:
      save(done, valid)
    if stop:
      store.wait()
      writer.close()
      store.close()
      message = (
        f'stopped by {signals.name} at step {done} of {num_steps}: checkpoint saved in '
        f'{store.directory}; run the same command to resume'
      )
      _say(message)
      raise Stopped(message, signals.exit_code)
    if stop_early:
      metrics_lib.console(
        f'early stopping at step {done}: no better {runner.valid_split} {main} in {patience} evals'
      )
      break

  check_finite()
  store.wait()
  writer.flush()
  # Final report: the best evaluated checkpoint (the final state when none was evaluated).
  best = store.restore_best(runner.abstract_with_shardings())
  final_state = best[0] if best is not None else state
  final_step = int(jax.device_get(final_state['step']))
  results = {}
  for split in runner.eval_splits:
    if split == runner.valid_split and last_valid is not None and last_valid[0] == final_step:
      results[split] = last_valid[1]  # Already measured on these parameters in this run.
    else:
      results[split] = runner.evaluate(final_state['params'], final_state['model_state'], split)
    writer.write(final_step, results[split], prefix=f'final_{split}/')
  # Host copies on every process (a collective), then process 0 alone runs the model on them.
  params, model_state = ckpt_lib.host_arrays((final_state['params'], final_state['model_state']))
  if jax.process_index() == 0:
    for name, path in task.write_artifacts(params, model_state, workdir).items():
      metrics_lib.console(f'wrote {path}')
      if str(path).endswith('.png'):
        writer.write_image(final_step, name, path)
      elif str(path).endswith('.txt'):
        writer.write_text(final_step, name, epath.Path(path).read_text())
  writer.close()
  store.close()
  print_results(results)
  return {'results': results, 'state': state, 'best_step': final_step}


def restore_params(
  config: ml_collections.ConfigDict,
  workdir: str | epath.Path,
  checkpoint: str = 'best',
  runner: Runner | None = None,
) -> tuple[Runner, dict]:
  """(runner, state) of the best evaluated ('best') or the newest ('latest') checkpoint of `workdir`."""
  if checkpoint not in ('best', 'latest'):
    raise ValueError(f'--checkpoint must be best or latest, not {checkpoint!r}')
  if runner is None:
    runner = Runner(config)
    load_artifacts = getattr(runner.task, 'load_artifacts', None)  # What the run saved beside its state.
    if load_artifacts is not None:
      load_artifacts(workdir)
  workdir = workdir_lib.as_path(workdir)
  directory = workdir / 'checkpoints'
  if not directory.exists():
    raise ckpt_lib.CheckpointError(f'no checkpoint in {workdir} ({directory} does not exist)')
  store = open_store(runner, workdir, read_only=True)
  abstract = runner.abstract_with_shardings()
  restored = store.restore_best(abstract) if checkpoint == 'best' else None
  if restored is None:  # 'latest', or a run stopped before its first evaluation.
    restored = store.restore_latest(abstract)
  if restored is None:
    raise ckpt_lib.CheckpointError(f'no {checkpoint} checkpoint in {directory}')
  return runner, restored[0]


def evaluate(config: ml_collections.ConfigDict, workdir: str | epath.Path, checkpoint: str = 'best') -> dict:
  """Evaluates a checkpoint on config.eval.splits and prints `<split>_<metric>: <value>` lines."""
  runner, state = restore_params(config, workdir, checkpoint)
  step = int(jax.device_get(state['step']))
  metrics_lib.console(f'evaluating the {checkpoint} checkpoint (step {step}) of {workdir}')
  results = {
    split: runner.evaluate(state['params'], state['model_state'], split) for split in runner.eval_splits
  }
  print_results(results)
  return results


def load_config(workdir: str | epath.Path) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (`<workdir>/config.json`)."""
  path = workdir_lib.as_path(workdir) / 'config.json'
  if not path.exists():
    raise ckpt_lib.CheckpointError(f'{workdir} holds no config.json (not a workdir of launch.py)')
  return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def load(workdir: str | epath.Path, checkpoint: str = 'best') -> tuple[ml_collections.ConfigDict, Any]:
  """(config, params) of a finished or running experiment, for notebooks and sampling."""
  config = load_config(workdir)
  _, state = restore_params(config, workdir, checkpoint)
  return config, state['params']


def _tuples(tree):
  """JSON turned the config's tuples into lists; turn them back."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def sample(config: ml_collections.ConfigDict, workdir: str | epath.Path, checkpoint: str = 'best') -> str:
  """A generated sample of the task (text for char models), printed and returned."""
  runner, state = restore_params(config, workdir, checkpoint)
  params, model_state = ckpt_lib.host_arrays((state['params'], state['model_state']))
  text = runner.task.sample(
    params, model_state, jax.random.PRNGKey(config.seed), workdir_lib.as_path(workdir)
  )
  if text is None:
    raise ValueError(
      f'--mode=sample: the {config.task} task generates no samples; use a character '
      f'model config (e.g. configs/ptb_char.py)'
    )
  metrics_lib.console(text)
  return text


def summary(config: ml_collections.ConfigDict, task=None) -> int:
  """Prints a table of parameter names, shapes and counts, then `total_params: N`; no training.

  Only shapes are computed (`jax.eval_shape`), so paper-size models take seconds. The task is made with
  load_data=False: the data set is not read.
  """
  if task is None:
    task = make_task(config, load_data=False)
  params, model_state = jax.eval_shape(task.init_variables, jax.random.PRNGKey(0))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  rows = [
    ('/'.join(str(getattr(k, 'key', k)) for k in path), tuple(x.shape), int(np.prod(x.shape)))
    for path, x in flat
  ]
  width = max([len(r[0]) for r in rows] + [4])
  lines = [f'{"name":<{width}}  {"shape":<20}  {"count":>12}', '-' * (width + 36)]
  lines += [f'{name:<{width}}  {str(shape):<20}  {count:>12,}' for name, shape, count in rows]
  total = sum(r[2] for r in rows)
  for line in lines:
    metrics_lib.console(line)
  metrics_lib.console(f'total_params: {total}')
  paper = config.get('paper', {})
  if paper.get('params') or paper.get('test'):
    metrics_lib.console(f'paper_params: {paper.get("params", "")}')
    metrics_lib.console(f'paper_test: {paper.get("test", "")}')
  return total
