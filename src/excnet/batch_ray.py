"""The Ray engine for `excnet batch`: the same jobs as the local engine, on a Ray cluster.

Ray Data carries the job list (source, destination) to a pool of actors; each actor keeps one
warm `Restorer` and does its own file I/O through `excnet.batch.restore_file` (so EXIF, ICC
and 16-bit depth survive, and outputs are written atomically). Records stream back to the
driver, which appends them to the manifest. Ray is an optional dependency (`excnet[ray]`),
imported only here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import islice

import numpy as np

from .batch import BatchConfig, Job, restore_job, set_threads
from .pipeline import Restorer

# Jobs handed to Ray Data at a time: bounds driver memory for huge batches. The actor pool is
# rebuilt per chunk, so the network restarts cold once per CHUNK images.
CHUNK = 100_000


class _RestoreActor:
    """One Ray actor: a warm Restorer for every row it is given."""

    def __init__(self, config: BatchConfig) -> None:
        set_threads(config.threads or 1, torch=config.options.get("solver") == "excnet")
        self.config = config
        self.restorer = Restorer(**config.options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [json.dumps(restore_job(self.restorer, (str(s), str(d)), self.config))
                   for s, d in zip(batch["src"], batch["dst"], strict=True)]
        return {"record": np.array(records, dtype=object)}


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at address, or start a local instance; True if this call started
    (and so should shut down) Ray."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, num_cpus=None if address else num_cpus,
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             configure_logging=True)
    return True


def run_ray(jobs: Iterable[Job], config: BatchConfig, workers: int | None = None,
            address: str | None = None) -> Iterator[dict]:
    """Restore the jobs on Ray with `workers` actors (default: one per cluster CPU); yield the
    records as they finish. Each actor gets cluster CPUs / workers cores and as many threads."""
    import ray

    started = connect(address)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = workers or cpus
        per_actor = max(1, cpus // workers)
        actor_config = replace(config, threads=per_actor)
        jobs = iter(jobs)
        while chunk := list(islice(jobs, CHUNK)):
            size = min(workers, len(chunk))
            ds = ray.data.from_items([{"src": s, "dst": d} for s, d in chunk],
                                     override_num_blocks=min(len(chunk), 16 * size))
            out = ds.map_batches(_RestoreActor, fn_constructor_kwargs={"config": actor_config},
                                 batch_size=1, compute=ray.data.ActorPoolStrategy(size=size),
                                 num_cpus=per_actor)
            for row in out.iter_rows():
                yield json.loads(row["record"])
    finally:
        if started:
            ray.shutdown()
