"""The mesh and host arrays on it: the one place aejax lays data over devices.

Data parallelism: one mesh over every device of every process, with one axis,
``data`` (one device is a mesh of one, the same code path). Parameters, optimizer
state, keys and the uint8 train set are replicated; each batch is sharded on
``data``, so XLA partitions the step by examples and inserts the gradient's
all-reduce.

A sweep (``aejax.sweep``) adds a first axis, ``members``: every array with a leading
members axis (parameters, optimizer state, keys, epoch orders) is split on it, so
members on different devices train with no communication between them; each
member's batch is split on ``data`` as before.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = "data"
MEMBERS = "members"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A mesh with one axis, ``data``, over the first ``num_devices`` devices (every
  device of every process by default)."""
  devices = jax.devices() if num_devices is None else jax.devices()[:num_devices]
  return jax.make_mesh((len(devices),), (DATA,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def make_member_mesh(num_members: int, num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 2-D mesh (``members`` × ``data``) over the first ``num_devices`` devices: the
  members axis as long as the largest common divisor of the members and devices."""
  devices = jax.devices() if num_devices is None else jax.devices()[:num_devices]
  across = math.gcd(num_members, len(devices))
  return jax.make_mesh((across, len(devices) // across), (MEMBERS, DATA), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a run's arrays lie: one model's state replicated, or a sweep's split on
  its leading members axis; batches split on ``data`` (inside the members ``vmap``,
  on ``members`` too)."""
  mesh: jax.sharding.Mesh
  members: bool = False

  @property
  def batch(self) -> NamedSharding:
    return batch_sharded(self.mesh)

  @property
  def state(self) -> NamedSharding:
    """The state, keys and orders (and a step's metrics)."""
    return NamedSharding(self.mesh, P(MEMBERS) if self.members else P())

  @property
  def stacked(self) -> NamedSharding:
    """Metrics stacked over steps: ``[steps]``, or ``[steps, M]``."""
    return NamedSharding(self.mesh, P(None, MEMBERS) if self.members else P())


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """A batch's layout: its leading axis split over ``data``."""
  return NamedSharding(mesh, P(DATA))


def put(mesh, array: np.ndarray, spec: P = P()) -> jax.Array:
  """A host array (the same on every process) as a global array laid out over
  ``mesh`` by ``spec`` (replicated by default)."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, NamedSharding(mesh, spec),
                                      lambda index: array[index])


def local_rows(mesh, batch_size: int) -> slice:
  """The rows of each global batch that this process's devices hold (and feed)."""
  indices = batch_sharded(mesh).addressable_devices_indices_map((batch_size,))
  blocks = sorted({index[0].indices(batch_size)[:2] for index in indices.values()})
  if any(a[1] != b[0] for a, b in zip(blocks, blocks[1:])):
    raise ValueError(f"This process's devices hold rows {blocks} of the batch, not one "
                     "block; streaming needs a mesh whose processes hold blocks.")
  return slice(blocks[0][0], blocks[-1][1])


def put_local_batches(mesh, local: np.ndarray, batch_size: int, stacked: bool):
  """This process's rows of K global batches, ``[K, rows, ...]``, as one global
  ``[K, B, ...]`` array sharded on B (``stacked``), or as K global ``[B, ...]`` arrays."""
  if stacked:
    return jax.make_array_from_process_local_data(
        NamedSharding(mesh, P(None, DATA)), local, (len(local), batch_size, *local.shape[2:]))
  sharding = batch_sharded(mesh)
  return [jax.make_array_from_process_local_data(sharding, rows, (batch_size, *rows.shape[1:]))
          for rows in local]
