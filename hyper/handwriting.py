"""Handwriting model of section 4.3 (Graves 2013, section 4): pen offsets -> cells -> mixture density.

The model reads stroke-3 points x_t = (Δx, Δy, end-of-stroke) and outputs, at every step, the 6M + 1
parameters of the distribution of x_{t+1} (`hyper.mdn`, eq. 18-25). The recurrent layers are any cell of
`hyper.cells` passed as a value (an unbound module, the template of every layer, as `flax.linen.RNN`
takes it); layer l runs `cell.clone(name=f"layer_{l}")`, the input projections of all steps as one
matmul outside the time loop (`cell.project_inputs`) and the recurrence (`cell.step`) in a `scan`.

`sample` generates lines with one jitted `jax.lax.scan`: unconditional or primed with a real line,
with Graves' bias and a temperature, and returns per step the weight change of every layer (the measure
of the paper's Figures 4 and 7; zero for fixed-weight cells).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from hyper import mdn

Array = jax.Array

INPUT_FEATURES = 3  # (Δx, Δy, end of stroke)


def _scan_body(cell, carry, xs, deterministic: bool, diagnostics: bool):
  projected, reset, valid = xs  # reset, valid: [B] bool
  carry = jax.tree.map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c), carry)
  new_carry, out, diag = cell.step(carry, projected, deterministic, diagnostics=diagnostics)
  # Past the end of a stream's data: state frozen, outputs and diagnostics zero.
  new_carry = jax.tree.map(lambda n, o: jnp.where(valid[:, None], n, o.astype(n.dtype)), new_carry, carry)
  out = jnp.where(valid[:, None], out, jnp.zeros_like(out))
  diag = {
    k: jnp.where(valid[:, None], v, jnp.zeros_like(v))
    for k, v in diag.items()
    if k.startswith('weight_change')
  }
  return new_carry, (out, diag)


class HandwritingModel(nn.Module):
  """points [B, T, 3] -> mixture outputs [B, T, 6M + 1] for the next point (pure, like `CharLM`).

  Attributes:
    cell: an unbound recurrent cell of `hyper.cells` (e.g. `HyperLSTMCell(900, hyper_features=128)`),
      the template of every layer.
    num_layers: stacked layers (the paper's models have one; Graves' have three).
    num_mixtures: M, the mixture components (20: 121 outputs).
    min_log_sigma, max_rho: the σ floor and the ρ bound of the mixture (`hyper.mdn.split_outputs`).
    unroll: `scan` unroll factor.
  """

  cell: nn.Module
  num_layers: int = 1
  num_mixtures: int = 20
  min_log_sigma: float = mdn.DEFAULT_MIN_LOG_SIGMA
  max_rho: float = mdn.DEFAULT_MAX_RHO
  unroll: int = 1

  @nn.nowrap
  def initialize_carry(self, batch_size: int):
    """Zero carry: a tuple with one cell carry per layer; works on an unbound module."""
    rng = jax.random.PRNGKey(0)  # the cells' carries are zeros; the key is not used
    return tuple(
      self.cell.clone(parent=None).initialize_carry(rng, (batch_size, INPUT_FEATURES))
      for _ in range(self.num_layers)
    )

  @nn.compact
  def __call__(
    self,
    points: Array,
    carry=None,
    *,
    reset: Array | None = None,
    mask: Array | None = None,
    deterministic: bool = True,
    return_diagnostics: bool = False,
  ):
    """Runs the layers and the mixture head.

    Args:
      points: [B, T, 3] float (normalised offsets and the pen bit).
      carry: per-layer carries (`initialize_carry` or a previous call's); None: zeros.
      reset: optional bool [B, T]: zero the state before that step (a new line starts there).
      mask: optional [B, T]: where 0 the state is frozen and the outputs are zero (padding).
      deterministic: no dropout when True.
      return_diagnostics: also return {'layer_<l>': {'weight_change': [B, T, G], ...}}.

    Returns:
      (outputs float32 [B, T, 6M + 1], new_carry), plus the diagnostics when asked.
    """
    batch, steps = points.shape[:2]
    if carry is None:
      carry = self.initialize_carry(batch)
    if len(carry) != self.num_layers:
      raise ValueError(f'carry has {len(carry)} layers, the model {self.num_layers}')
    x = jnp.swapaxes(points.astype(jnp.float32), 0, 1)  # time-major [T, B, 3]
    reset_tm = (
      jnp.zeros((steps, batch), bool) if reset is None else jnp.swapaxes(jnp.asarray(reset, bool), 0, 1)
    )
    valid_tm = jnp.ones((steps, batch), bool) if mask is None else jnp.swapaxes(jnp.asarray(mask) > 0, 0, 1)
    body = functools.partial(_scan_body, deterministic=deterministic, diagnostics=return_diagnostics)
    scan = nn.scan(
      body,
      variable_broadcast='params',
      split_rngs={'params': False, 'dropout': True},
      in_axes=0,
      out_axes=0,
      unroll=self.unroll,
    )
    new_carry, diagnostics = [], {}
    for layer in range(self.num_layers):
      cell = self.cell.clone(name=f'layer_{layer}', parent=self)
      projected = cell.project_inputs(x)  # all T steps at once
      layer_carry, (x, diag) = scan(cell, carry[layer], (projected, reset_tm, valid_tm))
      new_carry.append(layer_carry)
      if return_diagnostics:
        diagnostics[f'layer_{layer}'] = {k: jnp.swapaxes(v, 0, 1) for k, v in diag.items()}
    outputs = mdn.MixtureDensityHead(self.num_mixtures, name='mdn')(jnp.swapaxes(x, 0, 1))
    if return_diagnostics:
      return outputs, tuple(new_carry), diagnostics
    return outputs, tuple(new_carry)

  @nn.nowrap
  def mixture(self, outputs: Array) -> mdn.Mixture:
    return mdn.split_outputs(
      outputs, self.num_mixtures, min_log_sigma=self.min_log_sigma, max_rho=self.max_rho
    )

  @nn.nowrap
  def nll(self, outputs: Array, targets: Array, mask: Array | None = None) -> Array:
    """-log p(x_{t+1}) in nats per point [B, T] (0 where mask is 0)."""
    return mdn.negative_log_likelihood(
      outputs,
      targets,
      mask,
      num_mixtures=self.num_mixtures,
      min_log_sigma=self.min_log_sigma,
      max_rho=self.max_rho,
    )


@functools.partial(jax.jit, static_argnames=('model', 'num_steps', 'batch_size'))
def sample(
  model: HandwritingModel,
  params: Any,
  rng: Array,
  num_steps: int,
  *,
  temperature: float | Array = 1.0,
  bias: float | Array = 0.0,
  prime: Array | None = None,
  batch_size: int = 1,
) -> dict[str, Any]:
  """`num_steps` points drawn one at a time, each fed back as the next input (one `lax.scan`).

  Args:
    model, params: a `HandwritingModel` and its parameters.
    rng: PRNG key.
    num_steps: points to generate.
    temperature, bias: of the mixture (`hyper.mdn.adjust`): τ, and Graves' b (eq. 61-62).
    prime: optional [P, 3] or [B, P, 3] (normalised) points of a real line, read first; the sample
      continues it. Without it the model starts from the zero offset that begins every line.
    batch_size: independent samples (when `prime` has no batch axis).

  Returns:
    {'points': [B, num_steps, 3] normalised offsets (pen bit 0/1), 'weight_change': {'layer_<l>':
    [B, num_steps, G]}: the weight change of the step whose output distribution drew each point, and
    'prime_weight_change': the same over the prime's steps (absent without a prime)}.
  """
  variables = {'params': params}
  carry = model.initialize_carry(batch_size)
  out = {}
  if prime is None:
    start = jnp.zeros((batch_size, 1, INPUT_FEATURES), jnp.float32)
  else:
    prime = jnp.asarray(prime, jnp.float32)
    prime = jnp.broadcast_to(prime, (batch_size,) + prime.shape[-2:]) if prime.ndim == 2 else prime
    start = prime
  y, carry, diag = model.apply(variables, start, carry, return_diagnostics=True)
  if prime is not None:
    out['prime_weight_change'] = {k: v['weight_change'] for k, v in diag.items()}
  last = lambda a: a[:, -1]
  state = (carry, last(y), {k: last(v['weight_change']) for k, v in diag.items()})

  def step(state, key):
    carry, y, change = state
    point = mdn.sample(key, model.mixture(y), temperature, bias)  # [B, 3]
    y, carry, diag = model.apply(variables, point[:, None, :], carry, return_diagnostics=True)
    new_change = {k: last(v['weight_change']) for k, v in diag.items()}
    return (carry, last(y), new_change), (point, change)

  _, (points, changes) = jax.lax.scan(step, state, jax.random.split(rng, num_steps))
  out['points'] = jnp.swapaxes(points, 0, 1)
  out['weight_change'] = {k: jnp.swapaxes(v, 0, 1) for k, v in changes.items()}
  return out
