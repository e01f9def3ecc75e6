"""The one train loop for every family: state pytree, mesh, jitted step, checkpoints, evaluation.

The train state is one dict pytree -- step, params, opt_state, model_state (e.g. batch_stats), carry (the
recurrent state carried between batches), rng and nonfinite_step (the first step whose loss or gradient
was NaN/Inf, -1 if none) -- whose shapes come from `jax.eval_shape` and shardings from named mesh axes.
Batches are stateless by step, so `state['step']` is also the data position and a restored state resumes
exactly. The NaN guard lives inside the jitted step (no update on a non-finite step, the step recorded in
the state) and is read only when logging, evaluating or checkpointing: no host sync per step.
"""

from __future__ import annotations

import collections
import functools
import importlib.metadata
import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from experiments import checkpoints as ckpt_lib
from experiments import metrics as metrics_lib
from experiments import tasks as tasks_lib

# Number of times each jitted function was traced in this process (recompilation is a bug).
TRACE_COUNTS: collections.Counter = collections.Counter()


# optax.tree.norm where it exists (newer optax deprecates optax.global_norm), else the old name.
_global_norm = getattr(getattr(optax, 'tree', None), 'norm', None) or optax.global_norm


class TrainingDiverged(RuntimeError):
  """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


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
  return to_steps(steps=config.train.num_steps, epochs=config.train.num_epochs,
                  steps_per_epoch=steps_per_epoch)


def make_optimizer(train: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """Clipping, coupled weight decay, Adam or Nesterov SGD, constant or step learning rate."""
  if train.schedule == 'constant':
    learning_rate = train.learning_rate
  elif train.schedule == 'step':
    boundaries = {to_steps(epochs=e, steps_per_epoch=steps_per_epoch): train.decay_factor
                  for e in train.decay_epochs}
    learning_rate = optax.piecewise_constant_schedule(train.learning_rate, boundaries)
  else:
    raise ValueError(f'unknown schedule {train.schedule!r}; use constant or step')
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
  return jax.make_mesh(tuple(shape), tuple(mesh_config.axes),
                       axis_types=(jax.sharding.AxisType.Auto,) * len(shape))


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


def state_shardings(abstract_state: dict, mesh: jax.sharding.Mesh, min_size: int) -> dict:
  named = lambda spec: NamedSharding(mesh, spec)
  params_rule = lambda x: named(_param_spec(x, mesh, min_size))
  shardings = {k: jax.tree.map(lambda _: named(P()), v) for k, v in abstract_state.items()}
  for key in ('params', 'opt_state', 'model_state'):
    shardings[key] = jax.tree.map(params_rule, abstract_state[key])
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


def train_step(state: dict, batch: dict, *, task, tx, nan_at_step: int = -1) -> tuple[dict, dict]:
  """One optimizer step; skips the update (and records the step) when loss or gradients are not finite."""
  TRACE_COUNTS['train_step'] += 1
  step = state['step']
  rng = jax.random.fold_in(state['rng'], step)

  def loss_fn(params):
    return task.loss_fn(params, state['model_state'], state['carry'], batch, rng, step)

  (loss, (model_state, carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  if nan_at_step >= 0:  # Test hook for the NaN guard.
    loss = jnp.where(step == nan_at_step, jnp.nan, loss)
    metrics = dict(metrics, loss=loss)
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
  TRACE_COUNTS['eval_step'] += 1
  return task.eval_step(params, model_state, carry, batch)


class Runner:
  """Task, mesh, optimizer, abstract state and jitted functions of one configuration."""

  def __init__(self, config: ml_collections.ConfigDict, task=None):
    self.config = config
    self.task = task if task is not None else tasks_lib.build(config, jax.process_index(),
                                                              jax.process_count())
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
        functools.partial(train_step, task=self.task, tx=self.tx, nan_at_step=config.debug.nan_at_step),
        in_shardings=(self.shardings, batch_sharding), out_shardings=(self.shardings, replicated),
        donate_argnums=0)
    eval_carry = jax.eval_shape(functools.partial(self.task.init_carry, self.task.eval_batch_size()))
    self.eval_carry_shardings = jax.tree.map(
        lambda x: NamedSharding(self.mesh, _batch_spec(x, self.mesh)), eval_carry)
    self._eval_carry = jax.jit(functools.partial(self.task.init_carry, self.task.eval_batch_size()),
                               out_shardings=self.eval_carry_shardings)
    self.eval_step = jax.jit(
        functools.partial(eval_step, task=self.task),
        in_shardings=(self.shardings['params'], self.shardings['model_state'],
                      self.eval_carry_shardings, batch_sharding),
        out_shardings=(self.eval_carry_shardings, replicated))

  def abstract_with_shardings(self):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        self.abstract_state, self.shardings)

  def init(self) -> dict:
    return self._init()

  def evaluate(self, params, model_state, split: str) -> dict[str, float]:
    carry, sums = self._eval_carry(), None
    batches = metrics_lib.progress(self.task.eval_batches(split), self.task.num_eval_batches(split),
                                   f'eval {split}')
    for batch in batches:
      carry, batch_sums = self.eval_step(params, model_state, carry, global_batch(batch, self.mesh))
      sums = batch_sums if sums is None else jax.tree.map(jnp.add, sums, batch_sums)
    if sums is None:
      raise ValueError(f'split {split!r} gave no eval batches')
    return self.task.eval_metrics(jax.device_get(sums))


# ---- workdir bookkeeping -------------------------------------------------------------------------


def param_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def _git_commit() -> str:
  try:
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True,
                            timeout=10)
    return result.stdout.strip() if result.returncode == 0 else 'unknown (no commit yet)'
  except (OSError, subprocess.SubprocessError):
    return 'unknown'


def _versions() -> dict[str, str]:
  out = {'python': sys.version.split()[0]}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'ml-collections', 'numpy',
               'tensorflow-datasets', 'tensorboardX'):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = 'absent'
  return out


def write_run_info(config: ml_collections.ConfigDict, workdir: str, params_abstract,
                   data_source: str = '') -> None:
  """config.json and run_info.json (parameter count, data source, git commit, versions, devices, seed)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  info = {'param_count': param_count(params_abstract), 'data_source': data_source, 'git_commit': _git_commit(),
          'versions': _versions(), 'seed': config.seed, 'process_count': jax.process_count(),
          'devices': [str(d) for d in jax.devices()], 'time': time.time(), 'argv': sys.argv}
  with open(os.path.join(workdir, 'run_info.json'), 'w') as f:
    json.dump(info, f, indent=2)


def print_results(results: dict[str, dict[str, float]]) -> None:
  for split, values in results.items():
    for name, value in values.items():
      metrics_lib.console(f'{split}_{name}: {value:.4f}')


# ---- train, evaluate, load ----------------------------------------------------------------------


def _diverged(step: int, store: ckpt_lib.CheckpointStore) -> TrainingDiverged:
  steps = store.steps()
  last = f'step {steps[-1]} in {store.directory}' if steps else 'none (no checkpoint was saved)'
  return TrainingDiverged(f'the loss became NaN or Inf at step {step}; stopped; the last good '
                          f'checkpoint is {last}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it holds checkpoints), then evaluates the best checkpoint.

  Returns {'results': {split: metrics}, 'state': final state, 'train_losses': [(step, loss)...],
  'traces': number of times the train step was traced}.
  """
  TRACE_COUNTS.clear()
  runner = Runner(config)  # Loads the data first: bad data fails before the workdir is touched.
  task, num_steps = runner.task, runner.num_steps
  workdir = os.path.abspath(workdir)
  checkpoint_dir = os.path.join(workdir, 'checkpoints')
  store = ckpt_lib.CheckpointStore(checkpoint_dir, keep=config.checkpoint.keep,
                                   async_save=config.checkpoint.async_save)
  restored = store.restore_latest(runner.abstract_with_shardings())
  best_store = ckpt_lib.CheckpointStore(os.path.join(checkpoint_dir, 'best'), keep=1,
                                        async_save=config.checkpoint.async_save)
  if restored is None:
    state, meta = runner.init(), {}
    source = getattr(task, 'data_source', '')
    write_run_info(config, workdir, runner.abstract_state['params'], source)
    metrics_lib.console(f'training {config.variant or config.task} from scratch: '
                        f'{param_count(runner.abstract_state["params"]):,} parameters, '
                        f'{"data " + source + ", " if source else ""}{num_steps} steps '
                        f'({task.steps_per_epoch} per epoch) on {jax.device_count()} devices, '
                        f'mesh {dict(runner.mesh.shape)}')
  else:
    state, meta = restored
    metrics_lib.console(f'resuming from step {meta["step"]} of {num_steps} ({checkpoint_dir})')
  best_value = meta.get('best_value', math.inf)
  bad_evals = meta.get('bad_evals', 0)
  writer = metrics_lib.MetricWriter(workdir)
  start = int(jax.device_get(state['step']))
  # A best checkpoint newer than the resumed step belongs to the run that died; this run will
  # re-create it (bitwise) if it is still the best, and orbax never overwrites an existing step.
  best_store.delete_after(start)
  meter = metrics_lib.RateMeter(start, num_steps, task.units_per_step, task.unit)
  pending: list[dict] = []  # Device metrics since the last log line (fetched once per log).
  train_losses: list[tuple[int, float]] = []
  main = task.main_metric
  stop_early = False
  last_valid: tuple[int, dict] | None = None  # (step, metrics) of the newest validation pass.

  def check_finite():
    nonfinite = int(jax.device_get(state['nonfinite_step']))
    if nonfinite >= 0:
      store.wait()
      raise _diverged(nonfinite, store)

  if 0 < config.eval.patience <= bad_evals:  # This run already stopped early; go to the report.
    num_steps = start
  for step in range(start, num_steps):
    state, step_metrics = runner.train_step(state, global_batch(task.train_batch(step), runner.mesh))
    pending.append(step_metrics)
    done = step + 1
    last = done == num_steps
    do_log = done % config.log.every_steps == 0 or last
    do_eval = done % config.eval.every_steps == 0 or last
    do_save = done % config.checkpoint.every_steps == 0 or last
    if do_log or do_eval or do_save:
      check_finite()
    if do_log:
      window = jax.device_get(pending)
      for i, m in enumerate(window):
        train_losses.append((done - len(window) + i + 1, float(m['loss'])))
      means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
      rates = meter.rates(done)
      writer.write(done, {**means, **rates, 'epoch': done / task.steps_per_epoch}, prefix='train/')
      shown = f'train_{main}={means[main]:.4f}' if main in means else ''
      metrics_lib.console(
          f'step {done}/{num_steps}  train_loss={means["loss"]:.4f} {shown}  '
          f'{rates["steps_per_s"]:.2f} steps/s  {rates[f"{task.unit}_per_s"]:,.0f} {task.unit}/s  '
          f'ETA {metrics_lib.format_duration(rates["eta_s"])}')
      pending = []
    if do_eval:
      valid = runner.evaluate(state['params'], state['model_state'], 'valid')
      last_valid = (done, valid)
      writer.write(done, valid, prefix='valid/')
      improved = valid[main] < best_value
      if improved:
        best_value, bad_evals = valid[main], 0
        best_store.save(done, state, {'best_value': best_value, 'metric': main})
      else:
        bad_evals += 1
      metrics_lib.console(f'step {done}  valid_loss={valid["loss"]:.4f} valid_{main}={valid[main]:.4f}'
                          f'{"  (best)" if improved else ""}')
      patience = config.eval.patience
      stop_early = patience > 0 and bad_evals >= patience and not last
      meter.reset(done)
    if do_save or stop_early:
      store.save(done, state, {'best_value': best_value, 'bad_evals': bad_evals})
    if done == config.debug.kill_at_step:  # Test hook: die like a preempted job.
      os.kill(os.getpid(), signal.SIGKILL)
    if stop_early:
      metrics_lib.console(f'early stopping at step {done}: no better valid {main} in {patience} evals')
      break

  check_finite()
  store.wait()
  best_store.wait()
  writer.flush()
  # Final report: the best checkpoint by validation metric (the final state when none was kept).
  best = best_store.restore_latest(runner.abstract_with_shardings()) if best_store.steps() else None
  final_state = best[0] if best is not None else state
  results = {}
  final_step = int(jax.device_get(final_state['step']))
  for split in config.eval.splits:
    if split == 'valid' and last_valid is not None and last_valid[0] == final_step:
      results[split] = last_valid[1]  # Already measured on these parameters in this run.
    else:
      results[split] = runner.evaluate(final_state['params'], final_state['model_state'], split)
    writer.write(final_step, results[split], prefix=f'final_{split}/')
  if hasattr(task, 'write_artifacts'):
    # Host copies on every process (a collective), then process 0 alone runs the model on them.
    params, model_state = ckpt_lib.host_arrays((final_state['params'], final_state['model_state']))
    if jax.process_index() == 0:
      for path in task.write_artifacts(params, model_state, workdir):
        metrics_lib.console(f'wrote {path}')
  writer.close()
  store.close()
  best_store.close()
  print_results(results)
  return {'results': results, 'state': state, 'train_losses': train_losses,
          'traces': TRACE_COUNTS['train_step']}


def restore_params(config: ml_collections.ConfigDict, workdir: str, checkpoint: str = 'best',
                   runner: Runner | None = None) -> tuple[Runner, dict]:
  """(runner, state) from `<workdir>/checkpoints` ('latest') or `<workdir>/checkpoints/best` ('best')."""
  if checkpoint not in ('best', 'latest'):
    raise ValueError(f'--checkpoint must be best or latest, not {checkpoint!r}')
  runner = runner or Runner(config)
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if checkpoint == 'best':
    directory = os.path.join(directory, 'best')
  if not os.path.isdir(directory):
    raise ckpt_lib.CheckpointError(f'no {checkpoint} checkpoint in {workdir} ({directory} does not exist)')
  store = ckpt_lib.CheckpointStore(directory, keep=1, read_only=True)
  restored = store.restore_latest(runner.abstract_with_shardings())
  if restored is None:
    raise ckpt_lib.CheckpointError(f'no {checkpoint} checkpoint in {directory}')
  return runner, restored[0]


def evaluate(config: ml_collections.ConfigDict, workdir: str, checkpoint: str = 'best') -> dict:
  """Evaluates a checkpoint on config.eval.splits and prints `<split>_<metric>: <value>` lines."""
  runner, state = restore_params(config, workdir, checkpoint)
  step = int(jax.device_get(state['step']))
  metrics_lib.console(f'evaluating the {checkpoint} checkpoint (step {step}) of {workdir}')
  results = {split: runner.evaluate(state['params'], state['model_state'], split)
             for split in config.eval.splits}
  print_results(results)
  return results


def load(workdir: str, checkpoint: str = 'best') -> tuple[ml_collections.ConfigDict, Any]:
  """(config, params) of a finished or running experiment, for notebooks and sampling."""
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(_tuples(json.load(f)))
  _, state = restore_params(config, workdir, checkpoint)
  return config, state['params']


def _tuples(tree):
  """JSON turned the config's tuples into lists; turn them back."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def sample(config: ml_collections.ConfigDict, workdir: str, checkpoint: str = 'best') -> str:
  """Generated text from a char model checkpoint (config.sample.{length,temperature,prime})."""
  if config.task != 'char_lm':
    raise ValueError(f'--mode=sample needs a character model; this config is a {config.task} task')
  runner, state = restore_params(config, workdir, checkpoint)
  text = runner.task.sample(state['params'], config.sample.length, config.sample.temperature,
                            config.sample.prime, seed=config.seed)
  metrics_lib.console(text)
  return text


def summary(config: ml_collections.ConfigDict, task=None) -> int:
  """Prints a table of parameter names, shapes and counts, then `total_params: N`; no training.

  Only shapes are computed (`jax.eval_shape`), so paper-size models take seconds. The data set is not
  read: char models use the vocabulary size of their corpus.
  """
  if task is None:
    task = _shape_only_task(config)
  params, model_state = jax.eval_shape(task.init_variables, jax.random.PRNGKey(0))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  rows = [('/'.join(str(getattr(k, 'key', k)) for k in path), tuple(x.shape), int(np.prod(x.shape)))
          for path, x in flat]
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


VOCAB_SIZES = {'ptb_char': 50, 'enwik8': 205}  # Symbols of the paper's corpora (A.3.3, A.3.4).


def _shape_only_task(config: ml_collections.ConfigDict):
  """A task that can give parameter shapes without reading the data set."""
  if config.task == 'char_lm':
    from experiments.tasks import char_lm  # pylint: disable=g-import-not-at-top
    if config.data.name in VOCAB_SIZES:
      vocab_size = VOCAB_SIZES[config.data.name]
    else:
      from experiments.data import synthetic  # pylint: disable=g-import-not-at-top
      vocab_size = len(synthetic.ALPHABET)
    model = char_lm.build_model(config, vocab_size)
    seq_len = config.data.seq_len

    class _Shapes:
      def init_variables(self, rng):
        tokens = jnp.zeros((1, seq_len), jnp.int32)
        return model.init({'params': rng}, tokens, model.initialize_carry(1))['params'], {}
    return _Shapes()
  if config.task == 'image':
    from experiments.data import images  # pylint: disable=g-import-not-at-top
    from experiments.tasks import image  # pylint: disable=g-import-not-at-top
    model = image.build_model(config)
    shape = images.IMAGE_SHAPES[config.data.name]

    class _ImageShapes:
      def init_variables(self, rng):
        variables = dict(model.init({'params': rng}, jnp.zeros((1, *shape)), train=False))
        return variables.pop('params'), variables
    return _ImageShapes()
  raise ValueError(f'unknown task {config.task!r}')
