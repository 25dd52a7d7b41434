"""Python's cyclic garbage collector while a process starts.

A training process imports torch, Lightning and MLflow: about 600,000 objects. With the collector
on, those imports set off 8 full collections, each walking everything made so far; and every later
full collection walks them again (0.3 s, and Optuna collects after every trial). So a process
imports with the collector off, and turns it on with what the imports made frozen (``gc.freeze``)
when its work starts: later collections walk only what the work makes (bench/workers.py times a
sweep worker's process both ways). The reference cycles the imports left stay with the process
(``import torch`` alone leaves about 7,000 unreachable objects): a one-off few megabytes, where a
collection to free them would cost a third of the gain.

Used by the ``facslab`` console command (``facslab.cli.console``) and by the processes a command
spawns (``spawned``: the sweep's local workers). This module imports nothing heavy.
"""

from __future__ import annotations

import gc

#: whether ``defer`` turned the collector off and ``resume`` has not turned it on yet
_deferred = False


def defer() -> None:
    """The collector off, until ``resume``."""
    global _deferred
    gc.disable()
    _deferred = True


def resume() -> None:
    """The collector on again, if ``defer`` turned it off, with every object made so far frozen."""
    global _deferred
    if _deferred:
        _deferred = False
        gc.freeze()
        gc.enable()


def spawned(context, target, *args):
    """A process of ``context`` (multiprocessing's spawn, not started) that runs ``target(*args)``
    after importing what they need with the collector off: the function and its arguments travel
    pickled inside the process's one argument, so the child imports their modules (and their
    classes' modules) in ``_call``, not while multiprocessing unpickles the process object. So
    they are pickled by ``pickle`` itself: no queues, pipes or locks among them."""
    import pickle

    return context.Process(target=_call, args=(pickle.dumps((target, args)),))


def _call(payload: bytes):
    import pickle

    defer()
    try:
        target, args = pickle.loads(payload)
    finally:
        resume()
    return target(*args)
