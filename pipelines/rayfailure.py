"""Tell a build's own failures from Ray dying under it, and say the latter in one sentence.

When the raylet, a node, a worker that exhausted its retries or the object store goes away,
Ray raises one of its system errors (often wrapped in a Ray Data error, several levels deep).
None of it is the build's fault: the finished work is kept, and ``--resume`` finishes the build.
"""

from __future__ import annotations

# Ray's system errors, by class name, with what died (checked along the exception chain).
_WHAT_DIED = {
    "LocalRayletDiedError": "the local Ray node (its raylet process) died",
    "NodeDiedError": "a Ray node died",
    "RaySystemError": "Ray's system processes failed",
    "WorkerCrashedError": "a Ray worker process died and was not retried",
    "OwnerDiedError": "the Ray process that owned the build's data died",
    "ObjectLostError": "data held by Ray was lost (its node or the object store died)",
    "ActorDiedError": "a Ray actor process died",
    "ActorUnavailableError": "a Ray actor became unreachable",
    "OutOfMemoryError": "Ray killed a worker because the machine ran out of memory",
    "RpcError": "the connection to Ray broke",
}


def _chain(error: BaseException):
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        cause = getattr(current, "cause", None)  # a RayTaskError carries the worker's exception
        todo += [cause if isinstance(cause, BaseException) else None, current.__cause__, current.__context__]


def ray_failure(error: BaseException) -> str | None:
    """What died, when ``error`` comes from Ray losing a process or node; else ``None``."""
    for current in _chain(error):
        for klass in type(current).__mro__:
            if klass.__module__.startswith("ray.") and klass.__name__ in _WHAT_DIED:
                return f"{_WHAT_DIED[klass.__name__]} ({klass.__name__})"
    return None
