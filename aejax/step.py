"""The pure pieces of training: the train state, the train step, epochs (the
optimizer is ``optimizer.make_optimizer``).

The train step is ``(state, batch, key) -> (state, metrics)``: jit-compiled, pure,
with its randomness from ``jax.random.fold_in(key, state.step)`` so that a resumed
run draws the same noise at the same step. Its loss is the ``Objective`` (the
weighted sum of the config's loss terms); each term is reported in the metrics.

The dataset lives on the device as uint8 and is scaled to [0, 1] there. An epoch's
batch order is a permutation drawn on the device from ``fold_in(seed, epoch)``,
and each step picks its batch by ``state.step``, so there is no host↔device
traffic inside an epoch. An epoch runs in chunks of steps, each either one compiled
``lax.scan`` or one compiled step per batch (``make_epoch_fns``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import corruption as corruption_lib, sharding
from aejax.objective import Objective, to_float

class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the message names the step and the term."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any
  model_state: Any = flax.struct.field(default_factory=dict)  # Family.state_collections

  @property
  def variables(self) -> dict:
    """What ``model.apply`` takes: ``{"params": ..., <state collections>}``."""
    return {"params": self.params, **self.model_state}


# ------------------------------------------------------------------- the step


def make_train_step(objective: Objective, optimizer: optax.GradientTransformation,
                    corrupt: corruption_lib.Corruption = corruption_lib.identity,
                    microbatch_size: int | None = None) -> Callable:
  """``train_step(state, batch, key) -> (state, metrics)``; batch uint8 [B, H, W, C].

  Pure: jit it, scan it, shard it. ``corrupt(key, images)`` makes the encoder's input
  from the whole batch, with ``key`` folded with the step number; the model's rng
  streams get ``fold_in(key, 1)``, folded again with the chunk's index. ``metrics``
  holds the total 'loss' and each term.

  ``microbatch_size`` (a divisor of B) computes the batch's gradient as the mean of
  its chunks' gradients, one chunk after another: the same update up to float
  rounding (the noise is drawn for the whole batch first; a model that samples draws
  per chunk), with each chunk's activations small enough to stay in a CPU's caches.
  The chunks are unrolled, not a ``lax.scan``: on XLA:CPU a conv net's step ran
  several times slower inside a loop (see ``engine.resolve_microbatch_size``).
  """

  def loss_fn(params, model_state, inputs, target, key):
    loss, terms, outputs = objective(params, {"inputs": inputs, "target": target}, key,
                                     model_state)
    return loss, (terms, outputs.get("new_state", model_state))

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch: jax.Array, key: jax.Array):
    key = jax.random.fold_in(key, state.step)
    target = to_float(batch)
    inputs = corrupt(key, target)
    model_key = jax.random.fold_in(key, 1)
    size = microbatch_size or len(batch)
    if len(batch) % size:
      raise ValueError(f"microbatch_size={size} does not divide the batch of {len(batch)}.")
    # Strided chunks (rows i, i + n, i + 2n, ...): with the batch sharded on the data
    # axis each device keeps its own rows, where contiguous slices would move rows
    # between devices (in a trial on 8 devices: ~56 collective-permutes, 3.5× slower).
    n = len(batch) // size
    chunk = lambda x, i: x.reshape(size, n, *x.shape[1:])[:, i]
    chunks = [grad_fn(state.params, state.model_state, chunk(inputs, i), chunk(target, i),
                      jax.random.fold_in(model_key, i))
              for i in range(n)]
    # The chunks' mean: of the losses and gradients, and of the model state each chunk
    # updated from the same old state (an EMA of the whole batch's statistics).
    (total, (values, model_state)), grads = jax.tree.map(
        lambda *xs: sum(xs) / len(xs) if len(xs) > 1 else xs[0], *chunks)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                           model_state=model_state)
    return new_state, {"loss": total, **values}

  return train_step


# ------------------------------------------------------------------ the epoch


def epoch_permutation(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
  """The batch order of the epoch that ``step`` falls in: int32 [steps, batch_size].

  Depends only on the epoch number, so a resumed run sees the same order.
  """
  steps = n // batch_size
  epoch = step // steps
  perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
  return perm[: steps * batch_size].reshape(steps, batch_size)


def _sharded(train_step: Callable, batch_sharding) -> Callable:
  """``train_step`` with its batch constrained to ``batch_sharding`` (None: as is)."""
  def sharded_step(state, batch, *rest):
    if batch_sharding is not None:
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    return train_step(state, batch, *rest)
  return sharded_step


def over_members(fn: Callable, numbers: dict | None, in_axes: tuple) -> Callable:
  """``fn(*args, numbers)`` of one member as a function of ``args`` over a leading
  members axis (``in_axes``), each member with its own ``numbers`` (``{key: [M]}``).
  ``fn`` itself when there are no members (``numbers`` None). Sharding constraints
  inside ``fn`` gain the members axis (``spmd_axis_name``)."""
  if numbers is None:
    return fn
  over = jax.vmap(fn, in_axes=(*in_axes, 0), spmd_axis_name=sharding.MEMBERS)
  return lambda *args: over(*args, numbers)


def member_groups(fn: Callable, numbers: dict, group: int) -> Callable:
  """``fn(state, images, order, key, numbers)`` of one member as a step of ``group``
  members of a sweep: ``(state, images, order, key, start) -> (state, metrics
  [group])`` trains members ``start .. start + group - 1`` of the stacked state (one
  member as it is, or ``group`` of them in a ``vmap``) and writes them back in place.
  Traced once for every ``start``: 'scan' mode loops it over the groups inside the
  compiled step. ('step' mode instead gives each group its own state for a chunk and
  dispatches one compiled step per group: a loop around a conv net is slow on XLA:CPU,
  and the conv nets, whose vmapped convolutions are grouped ones, slower still, are
  the reason members run one after another at all.)"""
  over = fn if group == 1 else jax.vmap(fn, in_axes=(0, None, 0, 0, 0))

  def group_step(state, images, order, key, start):
    if group == 1:
      take = lambda tree: jax.tree.map(
          lambda x: jax.lax.dynamic_index_in_dim(x, start, keepdims=False), tree)
      put = lambda full, part: jax.lax.dynamic_update_index_in_dim(full, part, start, 0)
    else:
      take = lambda tree: jax.tree.map(
          lambda x: jax.lax.dynamic_slice_in_dim(x, start, group), tree)
      put = lambda full, part: jax.lax.dynamic_update_slice_in_dim(full, part, start, 0)
    new, metrics = over(take(state), images, take(order), take(key), take(numbers))
    metrics = metrics if group > 1 else jax.tree.map(lambda x: x[None], metrics)
    return jax.tree.map(put, state, new), metrics

  return group_step


def _stacker(out_sharding, grouped: int = 0) -> Callable:
  """Stacks a list of per-step metric dicts, under jit: an eager op cannot read arrays
  that span processes. ``grouped`` k > 0: each step's item is a list of its groups'
  metrics (k members each; k = 1: one member's, unbatched), joined into ``[steps, M]``."""
  def stack(history):
    if grouped:
      join = jnp.stack if grouped == 1 else jnp.concatenate
      history = [jax.tree.map(lambda *xs: join(xs), *groups) for groups in history]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *history)
  return jax.jit(stack, out_shardings=out_sharding)


def _shardings(layout):
  """(batch, state, stacked metrics) shardings of ``layout``; all None without one."""
  return (None, None, None) if layout is None else (layout.batch, layout.state,
                                                    layout.stacked)


def make_epoch_fns(train_step: Callable, n: int, batch_size: int, mode: str,
                   layout=None, numbers: dict | None = None, member_group: int = 0):
  """Returns ``(start_epoch, run_chunk)``: compiled, and the one chunk runner of every
  mode around compiled calls (``_chunk_runner``).

  ``start_epoch(state, shuffle_key) -> order``, the order of the epoch ``state.step``
  falls in; ``run_chunk(state, images, order, key, steps) -> (state, metrics stacked
  over steps)`` trains the next ``steps`` steps of that epoch (a chunk). In 'scan'
  mode a chunk is one call, compiled once per length; in 'step' mode it dispatches one
  compiled step per batch (no host sync in between). Each step gathers its batch by
  ``state.step``, so an epoch cut into chunks anywhere trains exactly as the epoch in
  one call (``train`` cuts epochs where a run may stop or save, ``engine.chunk_steps``).
  ``layout`` (``sharding.Layout``): how batches, state and metrics lie on the mesh.
  With ``numbers`` (a sweep's ``{key: [M]}``), ``train_step(state, batch, key,
  numbers)`` is one member's, and state, keys and order have a leading members axis:
  each member gathers its own batches from the one train set. ``member_group`` 0: a
  step trains every member in one ``vmap``; k > 0: k members at a time, one group
  after another, with one member's (or one group's) step compiled once whatever M
  (``member_groups``; k divides M and the members lie on one device,
  ``engine.resolve_member_group``).
  """
  steps_per_epoch = n // batch_size
  batch_sharding, state_sharding, stacked = _shardings(layout)
  permutation = lambda state, key, *_: epoch_permutation(key, state.step, n, batch_size)
  start_epoch = jax.jit(over_members(permutation, numbers, (0, 0)),
                        out_shardings=state_sharding)
  sharded_step = _sharded(train_step, batch_sharding)

  def one_member(state, images, order, key, *numbers):
    return sharded_step(state, images[order[state.step % steps_per_epoch]], key, *numbers)

  grouped = numbers is not None and member_group > 0
  if grouped:
    group_step = member_groups(one_member, numbers, member_group)
    starts = lambda state: range(0, len(state.step), member_group)

    def indexed_step(state, images, order, key):  # every member, a group at a time
      state, metrics = jax.lax.scan(
          lambda s, start: group_step(s, images, order, key, start), state,
          jnp.asarray(starts(state), jnp.int32))
      return state, jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), metrics)
  else:
    indexed_step = over_members(one_member, numbers, (0, None, 0, 0))

  if mode == "scan":  # the whole chunk in one call, compiled once per length
    @functools.partial(jax.jit, static_argnums=4, donate_argnums=0,
                       out_shardings=(state_sharding, stacked))
    def scan_chunk(state, images, order, key, steps):
      return jax.lax.scan(lambda s, _: indexed_step(s, images, order, key), state,
                          length=steps)
    return start_epoch, _chunk_runner(scan_chunk, mode, stack=lambda history: history[0])

  if grouped:  # each group's own state, stepped by one compiled step of one group
    group_of = (lambda fn: fn) if member_group == 1 else (
        lambda fn: jax.vmap(fn, in_axes=(0, None, 0, 0, 0)))
    compiled_group = jax.jit(group_of(one_member), donate_argnums=0)
    part = (lambda i: i) if member_group == 1 else (
        lambda i: slice(i * member_group, (i + 1) * member_group))
    split = jax.jit(lambda tree, groups: [jax.tree.map(lambda x: x[part(i)], tree)
                                          for i in range(groups)], static_argnums=1)
    join = jax.jit(lambda parts: jax.tree.map(
        lambda *xs: jnp.stack(xs) if member_group == 1 else jnp.concatenate(xs), *parts),
        out_shardings=state_sharding)
    return start_epoch, _chunk_runner(
        compiled_group, mode, stack=_stacker(stacked, grouped=member_group),
        split=lambda state, order, key: split((state, order, key, numbers),
                                              len(state.step) // member_group),
        join=join)

  compiled_step = jax.jit(indexed_step, donate_argnums=0, out_shardings=state_sharding)
  return start_epoch, _chunk_runner(compiled_step, mode, stack=_stacker(stacked))


def _chunk_runner(advance: Callable, mode: str, stack: Callable,
                  split: Callable | None = None, join: Callable | None = None) -> Callable:
  """``run_chunk(state, images, order, key, steps) -> (state, metrics stacked over
  steps)`` of every mode, around the compiled ``advance(state, images, order, key,
  *numbers)``: in 'scan' mode it trains the whole chunk in one call (and takes
  ``steps`` last; ``run_chunk.lower`` lowers that call, to read its HLO); in 'step'
  mode one step a call, called ``steps`` times with no host sync in between.

  ``split(state, order, key)`` cuts a sweep's members into groups, each
  ``(state, order, key, numbers)``, that take each step one after another, each with
  its own state, and ``join`` puts the groups' states back together; without them the
  state is one part. ``stack`` makes the chunk's metrics of ``history``, which holds
  for each call the part's metrics, or with groups the list of the groups'.
  """
  def run_chunk(state, images, order, key, steps):
    calls, length = (1, (steps,)) if mode == "scan" else (steps, ())
    parts = [(state, order, key)] if split is None else split(state, order, key)
    states = [p[0] for p in parts]
    history = []
    for _ in range(calls):
      metrics = []
      for i, (_, *args) in enumerate(parts):
        states[i], part_metrics = advance(states[i], images, *args, *length)
        metrics.append(part_metrics)
      history.append(metrics if split is not None else metrics[0])
    return (states[0] if join is None else join(states)), stack(history)

  if mode == "scan":
    run_chunk.lower = advance.lower
  return run_chunk


def make_batch_fns(train_step: Callable, mode: str, layout=None):
  """``run_batches(state, batches, key) -> (state, metrics stacked over the batches)``:
  training on batches that arrive from outside (``config.input='stream'``) rather
  than gathered from a train set on the device.

  'scan': ``batches`` is one global uint8 array ``[K, B, H, W, C]`` (sharded on B),
  trained by one compiled ``lax.scan``, so K batches cost one dispatch. 'step': a
  sequence of K global ``[B, H, W, C]`` arrays, one compiled step each (the conv
  nets' mode on XLA:CPU, see ``make_epoch_fns``). The step is the same
  ``train_step`` as the device path's, and its noise comes from ``state.step``, so
  the same batches give the same updates.
  """
  batch_sharding, state_sharding, stacked = _shardings(layout)
  sharded_step = _sharded(train_step, batch_sharding)

  if mode == "scan":
    @functools.partial(jax.jit, donate_argnums=0, out_shardings=(state_sharding, stacked))
    def run_batches(state, batches, key):
      return jax.lax.scan(lambda s, batch: sharded_step(s, batch, key), state, batches)
    return run_batches

  compiled_step = jax.jit(sharded_step, donate_argnums=0, out_shardings=state_sharding)
  stack = _stacker(stacked)

  def run_batches(state, batches, key):
    history = []
    for batch in batches:
      state, metrics = compiled_step(state, batch, key)
      history.append(metrics)
    return state, stack(history)

  return run_batches


def check_finite(history: dict[str, np.ndarray], first_step: int) -> None:
  """Raises NonFiniteLossError naming the first step (and member, for a sweep's
  ``[steps, M]`` history) and term that went NaN/inf."""
  for i in range(len(history["loss"])):
    bad = [name for name, values in history.items() if not np.all(np.isfinite(values[i]))]
    if bad:
      name = next((b for b in bad if b != "loss"), "loss")
      value = np.asarray(history[name][i])
      member = "" if value.ndim == 0 else (
          f" (sweep member {int(np.flatnonzero(~np.isfinite(value))[0])})")
      raise NonFiniteLossError(
          f"Loss term {name!r} became {value[~np.isfinite(value)].flat[0] if value.ndim else value} "
          f"at step {first_step + i + 1}{member}. "
          "Training stopped; the last good checkpoint is kept. To go on from it with a "
          "lower learning rate, rerun with --config.learning_rate=<lower> "
          "--continue_with_changes (see docs/reliability.md), or check the data.")
