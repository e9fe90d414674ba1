"""The Ray engine for `excnet batch`: the same jobs as the local engine, on a Ray cluster.

Workers. One Ray actor per node, with all of the node's CPUs (`-j N`: N actors of cluster
CPUs / N each). An actor restores as many photos at once as it has CPUs, one core each, and
one more photo is written meanwhile: the local engine's conveyor (`batch.compute_slots`), in
Ray's threads of the actor, each thread with its own warm `Restorer`; the decode, restore and
encode of neighbouring photos overlap. A new actor first restores a tiny picture in memory
(`_warm_up`), so that what a fresh process pays on its first photo (Pillow's codecs and the
other modules loaded on first use) counts as the worker's start-up, not as a photo's time.
The driver sends each photo as one call and keeps two calls per actor thread queued, so an
actor never waits for work. It streams both ends: jobs are taken from the listing only as
actors have room, and each record is handed on (to the manifest) as it arrives, so the
driver's memory does not grow with the batch.

Lost workers. A killed worker process or node fails the calls it had in flight at once. Ray
restarts the actor (``max_restarts=-1``: on its node if that still lives, otherwise once a
node has room for it, e.g. a preempted node's replacement) but does not repeat its calls
(``max_task_retries=0``): the driver sends each of those photos again at once, to a live
actor, and counts them. A photo whose worker is lost `MAX_ATTEMPTS` times (it may be what
kills it) is recorded as an error. Outputs are written atomically (a temp file renamed; one
S3 PUT up to 5 GB), so a lost worker leaves no partial output; the temp files and unfinished
uploads it may leave are swept at the end of a run that lost workers or resumed a killed one.

Nothing exposed. A Ray instance started here listens on 127.0.0.1 only and has Ray's token
authentication on; a driver given a loopback ``--address`` joins that cluster over loopback
(Ray by itself replaces 127.0.0.1 by the machine's network address, see `_loopback`).

Ray is an optional dependency (`excnet[ray]`), imported only here, inside the functions.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .batch import (
    BatchConfig,
    Job,
    compute_slots,
    new_record,
    restore_job,
    set_threads,
    sweep_leftovers,
)
from .memory import keep_freed_memory
from .pipeline import Restorer

#: Tries per photo: a photo whose worker is lost this many times is recorded as an error.
MAX_ATTEMPTS = 3
#: Calls queued per actor thread (the conveyor's LOOKAHEAD): the next photo is always there.
QUEUED_PER_THREAD = 2
#: Seconds the batch waits with no worker available (every node lost, or none with room)
#: before it stops; re-running the command resumes.
NO_WORKER_PATIENCE = 600.0
#: Seconds a finished run waits for Ray to declare dead the nodes whose workers were lost
#: (Ray's health check takes about 15 s by default), to report them.
NODE_DEATH_WAIT = 30.0
#: Seconds a closed run (Ctrl-C, an error) waits for the photos being written to finish.
CLOSE_WAIT = 60.0
#: Actor options: what a lost worker gets (see the module's docstring), and glibc's heap set
#: as `memory.keep_freed_memory` sets it, but from the process's start: Ray's threads exist
#: before the actor's constructor runs, each with its own heap arena otherwise.
ACTOR_OPTIONS = {"max_restarts": -1, "max_task_retries": 0,
                 "runtime_env": {"env_vars": {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                                              "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}}}


class RayEngineError(RuntimeError):
    """The Ray engine cannot go on (unreachable cluster, a worker that cannot start, no
    worker left); the message says why and what to do."""


@dataclass
class RayStats:
    """What a Ray run reports beside its records (filled in as it goes)."""

    actors: int = 0  #: actors started
    nodes: int = 0  #: nodes they were placed on
    #: seconds from the call to the first worker ready: importing Ray, starting or joining
    #: the cluster, starting the actors and their warm-up (`_warm_up`)
    startup: float | None = None
    retried: int = 0  #: photos sent again because their worker was lost
    workers_lost: int = 0  #: actor processes lost (each restarted by Ray)
    nodes_lost: int = 0  #: nodes that hosted a worker and died during the run
    swept: int = 0  #: temp files / unfinished uploads removed at the end


class _Worker:
    """A Ray actor: photos restored `cpus` at a time (one core each) in Ray's threads of the
    actor, one more written meanwhile (`compute_slots`), each thread with a warm Restorer."""

    def __init__(self, config: BatchConfig, cpus: int) -> None:
        keep_freed_memory()
        set_threads(1, torch=config.options.get("solver") == "excnet")
        self._config = config
        self._slots, _ = compute_slots(cpus)
        self._local = threading.local()
        _warm_up(config)

    def node(self) -> str:
        """The id of the node this actor runs on (and proof that it is up)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def restore(self, src: str, dst: str) -> dict:
        """One photo's record (`restore_job`), with this thread's warm Restorer."""
        restorer = getattr(self._local, "restorer", None)
        if restorer is None:
            restorer = self._local.restorer = Restorer(**self._config.options)
        return restore_job(restorer, (src, dst), self._config, self._slots)

    def sweep(self, root: str) -> int:
        """Remove the leftovers of killed writes under root (run where root is visible)."""
        return sweep_leftovers(root, self._config.storage_options)


#: The warm-up picture's size: big enough to take the pipeline's every stage (strips, cells).
WARM_UP_SHAPE = (96, 128)


def _warm_up(config: BatchConfig) -> None:
    """Restore a tiny synthetic JPEG in memory, as `batch.restore_file` does a photo, so that
    the modules and codecs loaded on first use (Pillow's JPEG plugin, the strip encoder, NumPy
    helpers: 0.15 to 0.3 s in a fresh process, measured) are loaded before the worker says it
    is ready. The direct solver stands in for the network (whose imports `set_threads` has
    done), and the Restorer is thrown away: no photo's result depends on the warm-up. A
    failure is left for the photos to report, each in its own record."""
    try:
        import numpy as np

        from .imageio import decode_image, encode_image

        y, x = np.mgrid[0:WARM_UP_SHAPE[0], 0:WARM_UP_SHAPE[1]]
        pixels = np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], axis=-1).astype(np.uint8)
        image = decode_image(encode_image(pixels, "JPEG", threads=1), name="warm-up.jpg")
        restorer = Restorer(**{**config.options, "solver": "direct"})
        res = restorer.restore(image.pixels, config.curve, in_place=True, threads=1)
        encode_image(res.image, "JPEG", like=image, quality=config.quality, threads=1)
    except Exception:  # noqa: BLE001, S110 - a head start only; the photos report errors
        pass


def _is_loopback(address: str) -> bool:
    """Whether a Ray address (HOST:PORT, [V6]:PORT) names this machine's loopback."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _loopback() -> Iterator[None]:
    """While Ray starts or joins a node: treat this machine as 127.0.0.1.

    Ray resolves 127.0.0.1 (as a node or GCS address) to the machine's network address unless
    its multi-node mode is off (the default on Windows and macOS, `RAY_ENABLE_WINDOWS_OR_OSX_
    CLUSTER`); a node started on 127.0.0.1 makes its GCS, raylet and workers listen on
    127.0.0.1 only. The switch is Ray's own constant, read when an address is resolved.
    """
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if saved is None:  # a Ray without the switch: tests/test_batch_ray.py's socket test says
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at address, or start a private local instance (listening on
    127.0.0.1 only, token authentication on, usage statistics off unless the environment
    says otherwise); True if this call started Ray (the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    local = address is None
    loopback = local or (not address.startswith("ray://") and _is_loopback(address))
    if local:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray (2.59 on) turns token authentication on for a local instance and says so.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    if not local:
        _check_reachable(address)
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if local:
        options.update(num_cpus=num_cpus, include_dashboard=False)
    if loopback:
        options["_node_ip_address"] = "127.0.0.1"
    try:
        with _loopback() if loopback else _nothing():
            ray.init(address="local" if local else address, **options)
    except Exception as exc:  # noqa: BLE001 - whatever Ray raises, said in one line
        where = "start a local Ray instance" if local else f"reach the Ray cluster at {address}"
        raise RayEngineError(f"cannot {where}: {_brief(exc)}") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail fast, and in one line, where nothing listens at a HOST:PORT address (Ray itself
    retries for minutes, logging each try); "auto" and other forms are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: "
                             f"{exc.strerror or exc}") from None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _brief(exc: BaseException) -> str:
    """Ray's message without the tracebacks it embeds: its first line and its last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


@dataclass
class _Actor:
    """The driver's view of one worker actor."""

    handle: Any
    threads: int
    node: str | None = None
    ready: bool = False
    life: int = 0  #: bumped each time it comes back after a loss
    busy: int = 0  #: calls in flight
    ping_at: float = 0.0  #: when to ask again whether it is back (while not ready)
    pinged: bool = False  #: a readiness call is in flight


@dataclass
class _Pool:
    """The actors of one run and the photos in flight on them."""

    config: BatchConfig
    stats: RayStats
    started: float
    actors: list[_Actor] = field(default_factory=list)
    pending: dict = field(default_factory=dict)  # ObjectRef -> (job, attempt, actor, life)
    pings: dict = field(default_factory=dict)  # ObjectRef -> actor
    retry: deque = field(default_factory=deque)  # (job, attempt) to send again first
    hosts: set = field(default_factory=set)  # nodes our actors ran on
    suspects: set = field(default_factory=set)  # nodes of lost workers not seen since

    def start(self, workers: int | None) -> None:
        """One actor per node with CPUs (all of them), or `workers` actors spread out."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [(n["NodeID"], int(n["Resources"].get("CPU", 0)))
                 for n in ray.nodes() if n["Alive"]]
        nodes = [(node, cpus) for node, cpus in nodes if cpus >= 1]
        if not nodes:
            raise RayEngineError("the Ray cluster has no node with a CPU")
        remote = ray.remote(_Worker)
        if workers:
            cpus = max(1, sum(c for _, c in nodes) // workers)
            places = [(cpus, "SPREAD")] * workers
        else:
            places = [(cpus, NodeAffinitySchedulingStrategy(node, soft=True))
                      for node, cpus in nodes]
        for cpus, strategy in places:
            _, threads = compute_slots(cpus)
            handle = remote.options(num_cpus=cpus, max_concurrency=threads,
                                    scheduling_strategy=strategy, **ACTOR_OPTIONS).remote(
                self.config, cpus)
            self.actors.append(_Actor(handle, threads))
        self.stats.actors = len(self.actors)

    def run(self, jobs: Iterator[Job]) -> Iterator[dict]:
        import ray

        exhausted = False
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            for actor in self.actors:
                if not actor.ready and not actor.pinged and actor.ping_at <= now:
                    self.pings[actor.handle.node.remote()] = actor
                    actor.pinged = True
            for actor in sorted((a for a in self.actors if a.ready),
                                key=lambda a: a.busy / a.threads):
                while actor.busy < QUEUED_PER_THREAD * actor.threads:
                    if self.retry:
                        job, attempt = self.retry.popleft()
                    elif not exhausted and (job := next(jobs, None)) is not None:
                        attempt = 1
                    else:
                        exhausted = True
                        break
                    ref = actor.handle.restore.remote(*job)
                    self.pending[ref] = (job, attempt, actor, actor.life)
                    actor.busy += 1
            if exhausted and not self.pending and not self.retry:
                return
            if any(a.ready for a in self.actors):
                idle_since = now
            elif now - idle_since > NO_WORKER_PATIENCE:
                raise RayEngineError(
                    f"no Ray worker has been available for {NO_WORKER_PATIENCE:.0f} s (nodes "
                    "lost, or none with room); run the same command again to resume")
            waiting = [*self.pending, *self.pings]
            asleep = [a.ping_at for a in self.actors if not a.ready and not a.pinged]
            timeout = max(0.0, min(asleep) - now) if asleep else 10.0
            if not waiting:
                time.sleep(min(timeout, 10.0))
                continue
            done, _ = ray.wait(waiting, num_returns=1, timeout=min(timeout, 10.0))
            for ref in done:
                if ref in self.pings:
                    self._pinged(ref)
                else:
                    rec = self._finished(ref)
                    if rec is not None:
                        yield rec

    def _pinged(self, ref: Any) -> None:
        """A readiness call came back: the actor is up, restarting, or cannot start."""
        import ray
        from ray.exceptions import ActorDiedError, RayActorError

        actor = self.pings.pop(ref)
        actor.pinged = False
        try:
            node = ray.get(ref)
        except ActorDiedError as exc:
            if exc.actor_init_failed:
                raise RayEngineError(f"a Ray worker could not start: {_brief(exc)}") from None
            self.actors.remove(actor)  # gone for good (it cannot be restarted)
            return
        except RayActorError:  # restarting: ask again in a while
            actor.ping_at = time.monotonic() + 1.0
            return
        if self.stats.startup is None:
            self.stats.startup = time.monotonic() - self.started
        actor.ready, actor.node = True, node
        actor.life += 1
        self.hosts.add(node)
        self.suspects.discard(node)
        self.stats.nodes = len(self.hosts)

    def _finished(self, ref: Any) -> dict | None:
        """The record of a finished call; None when its photo goes back in the queue."""
        import ray
        from ray.exceptions import (
            NodeDiedError,
            ObjectLostError,
            RayActorError,
            RayTaskError,
            WorkerCrashedError,
        )

        job, attempt, actor, life = self.pending.pop(ref)
        actor.busy -= 1
        try:
            return ray.get(ref)
        except (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError) as exc:
            if actor.ready and life == actor.life:  # the first news of this loss
                actor.ready = False
                actor.ping_at = time.monotonic() + 1.0
                self.stats.workers_lost += 1
                if actor.node is not None:
                    self.suspects.add(actor.node)
            if attempt < MAX_ATTEMPTS:
                self.stats.retried += attempt == 1
                self.retry.append((job, attempt + 1))
                return None
            rec = new_record(*job)
            rec["error"] = (f"{job[0]}: its Ray worker was lost {attempt} times "
                            f"({type(exc).__name__})")
            return rec
        except RayTaskError as exc:  # restore_job records every failure; this is a bug
            rec = new_record(*job)
            rec["error"] = f"{job[0]}: internal error in the Ray worker ({exc})"
            return rec

    def sweep(self, root: str) -> None:
        """Remove leftovers of killed writes under root, from a live worker (it sees root)."""
        import ray

        for actor in self.actors:
            if actor.ready:
                try:
                    self.stats.swept += ray.get(actor.handle.sweep.remote(root))
                    return
                except ray.exceptions.RayError:
                    continue

    def count_lost_nodes(self) -> None:
        """Nodes that hosted a worker and are dead now, after giving Ray time to declare the
        nodes of lost workers dead."""
        import ray

        deadline = time.monotonic() + NODE_DEATH_WAIT
        while True:
            dead = {n["NodeID"] for n in ray.nodes() if not n["Alive"]}
            if self.suspects <= dead or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.stats.nodes_lost = len(self.hosts & dead)

    def close(self) -> None:
        """Let the photos in flight finish their writes (bounded), then end the actors."""
        import ray

        if self.pending:
            ray.wait(list(self.pending), num_returns=len(self.pending), timeout=CLOSE_WAIT)
        for actor in self.actors:
            ray.kill(actor.handle, no_restart=True)


def run_ray(jobs: Iterable[Job], config: BatchConfig, workers: int | None = None,
            address: str | None = None, stats: RayStats | None = None,
            sweep: str | None = None, resumed: bool = False) -> Iterator[dict]:
    """Restore the jobs on Ray (module docstring); yield the records as they finish.

    workers: actors (default one per node, with all its CPUs). address: the cluster (default:
    start a private local instance). stats: filled in as the run goes. sweep: the output root,
    cleaned of killed writes' leftovers at the end if workers were lost or `resumed`.
    Raises RayEngineError when the run cannot go on.
    """
    called = time.monotonic()  # start-up counts from here: importing Ray (about 1.3 s) is part
    import ray

    stats = RayStats() if stats is None else stats
    pool = _Pool(config, stats, called)
    started = connect(address)
    try:
        pool.start(workers)
        yield from pool.run(iter(jobs))
        if sweep is not None and (resumed or stats.workers_lost):
            pool.sweep(sweep)
        if stats.workers_lost:
            pool.count_lost_nodes()
    finally:
        try:
            pool.close()
        finally:
            if started:
                ray.shutdown()
