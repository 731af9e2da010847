"""One streaming driver: blocks of work → an accumulator, checkpointed, resumable, sharded.

Every long computation in convscope has the same shape: a list of independent *blocks* of
work (rows of a pick-freeze design, permutations of a Shapley estimator, chunks of a dataset,
groups of images), each evaluated on the model's device within one ``batch_size`` and folded
into an *accumulator* of streaming statistics. :func:`stream` runs that loop once for all:

* it calls ``process(index, block)`` for every block, which evaluates the block and updates
  the accumulator (see :class:`Accumulator`);
* after every block it writes an atomic checkpoint (:mod:`convscope.core.persist`): the
  accumulator's ``state_dict()``, the indices of the finished blocks and the run's
  :class:`~convscope.core.fingerprint.RunFingerprint`;
* a rerun with the same ``resume`` path restores the state, skips the finished blocks and ends
  with the result of an uninterrupted run (bit for bit); a checkpoint written by another run
  (model, inputs or settings) is refused with an error that names the difference;
* under ``torch.distributed`` (e.g. ``torchrun``; gloo on CPU), rank r processes the blocks
  ``r, r + W, r + 2W, ...`` and writes its own checkpoint ``<resume>.rank<r>``; at the end the
  states are gathered and merged in rank order, so every rank returns the same accumulator.

See ``docs/core.md`` for a worked example of a new accumulator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from convscope.core import persist
from convscope.core.errors import InputError
from convscope.core.fingerprint import RunFingerprint
from convscope.core.progress import progress_bar

__all__ = ["Accumulator", "BlockCheckpoint", "distributed_rank", "stream"]

A = TypeVar("A", bound="Accumulator")
B = TypeVar("B")

_FORMAT = "convscope-stream"
_FORMAT_VERSION = 1


@runtime_checkable
class Accumulator(Protocol):
    """Streaming statistics that can be updated, merged, saved and evaluated.

    ``update(...)`` folds one block of evaluations in (its arguments are the family's own);
    ``merge(other)`` adds the blocks of another accumulator built the same way (the result
    must not depend on how blocks were split between the two); ``state_dict()`` returns
    tensors, dicts of tensors and JSON-able values; ``load_state_dict(state)`` restores it;
    ``compute()`` evaluates the statistics.
    """

    def update(self, *args: Any, **kwargs: Any) -> Any: ...

    def merge(self, other: Any) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...

    def compute(self) -> Any: ...


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of the ``torch.distributed`` group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BlockCheckpoint:
    """The resume file of one rank: accumulator state, finished blocks, run fingerprint.

    Parameters
    ----------
    path
        File prefix (``<path>.npz`` / ``<path>.json``); rank r > 0 appends ``.rank<r>``.
    run
        Fingerprint of the run; a saved file of another run is refused on :meth:`load`.
    rank, world
        This process's rank and the number of processes (a resume must use the same number).
    """

    def __init__(
        self, path: str | Path, run: RunFingerprint, *, rank: int = 0, world: int = 1
    ) -> None:
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        if rank:
            base = base.with_name(f"{base.name}.rank{rank}")
        self.path = base
        self.run = run
        self.world = world

    def load(self) -> tuple[list[int], dict[str, Any]] | None:
        """``(finished block indices, accumulator state)``, or None when nothing is saved."""
        _, js = persist.pair_paths(self.path)
        if not js.is_file():
            return None
        arrays, header = persist.read(self.path, what="resume file")
        if header.get("format") != _FORMAT:
            raise InputError(
                f"{js} is not a convscope resume file (it may be a result or an old-format "
                "checkpoint). Delete it, or pass another resume path."
            )
        RunFingerprint.from_dict(header["run"]).check(self.run, js)
        if int(header.get("world_size", 1)) != self.world:
            raise InputError(
                f"The resume file {js} was written by {header.get('world_size')} processes, "
                f"this run has {self.world}. Resume with the same number of processes."
            )
        state = persist.unflatten_state(arrays, header["state"])
        return [int(i) for i in header["done"]], state

    def save(self, done: Sequence[int], state: dict[str, Any]) -> None:
        """Atomically replace the file with this state."""
        arrays, tree = persist.flatten_state(state)
        header = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "run": self.run.to_dict(),
            "world_size": self.world,
            "done": list(done),
            "state": tree,
        }
        persist.write(self.path, arrays, header)


def stream(
    blocks: Sequence[B],
    process: Callable[[int, B], object],
    accumulator: A,
    *,
    resume: str | Path | None = None,
    run: RunFingerprint | None = None,
    progress: bool | None = None,
    desc: str = "blocks",
    distributed: bool = True,
) -> A:
    """Process ``blocks`` into ``accumulator``: checkpointed, resumable and sharded.

    Parameters
    ----------
    blocks
        The work, in a fixed order (the same on every rank and at every resume).
    process
        ``process(index, block)`` evaluates one block (on the model's device, at most
        ``batch_size`` samples per forward pass) and updates ``accumulator`` with it.
    accumulator
        An empty :class:`Accumulator`; it is updated in place and returned (after the merge
        of all ranks under ``torch.distributed``).
    resume
        File prefix of the checkpoint written after every block; a rerun continues from it.
    run
        Fingerprint of the run (required with ``resume``), see
        :func:`~convscope.core.fingerprint.run_fingerprint`.
    progress
        Progress bar (None: automatic).
    desc
        Label of the progress bar.
    distributed
        Split the blocks over the ``torch.distributed`` ranks when a group is initialised.

    Returns
    -------
    Accumulator
        ``accumulator``, holding every block (of every rank).
    """
    rank, world = distributed_rank() if distributed else (0, 1)
    template = copy.deepcopy(accumulator) if world > 1 else None
    checkpoint = None
    if resume is not None:
        if run is None:
            raise InputError("stream(resume=...) needs the run's fingerprint (run=...).")
        checkpoint = BlockCheckpoint(resume, run, rank=rank, world=world)
    mine = [i for i in range(len(blocks)) if i % world == rank]
    done: list[int] = []
    if checkpoint is not None:
        loaded = checkpoint.load()
        if loaded is not None:
            done, state = loaded
            accumulator.load_state_dict(state)
    finished = set(done)
    for i in progress_bar(mine, desc=desc, show=progress):
        if i in finished:
            continue
        process(i, blocks[i])
        done.append(i)
        finished.add(i)
        if checkpoint is not None:
            checkpoint.save(done, accumulator.state_dict())
    if world > 1:
        assert template is not None
        accumulator = _merge_ranks(accumulator, template)
    return accumulator


def _merge_ranks(accumulator: A, template: A) -> A:
    """Gather every rank's state and merge them in rank order (the same on every rank)."""
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, accumulator.state_dict())
    merged = copy.deepcopy(template)
    merged.load_state_dict(states[0])
    for state in states[1:]:
        part = copy.deepcopy(template)
        part.load_state_dict(state)
        merged.merge(part)
    return merged
