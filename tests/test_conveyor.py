"""Many files at once (excnet.conveyor), and what the commands import.

The conveyor itself (order, bounded work in flight, one step per thread, errors, closing);
`excnet batch` and `excnet restore` with several threads giving the bytes a lone restore
gives; Ctrl-C with photos in flight; and the imports of the default path and of the help.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import make_backlit

from excnet import batch
from excnet.batch import compute_slots, restore_file
from excnet.cli import main
from excnet.conveyor import convey
from excnet.imageio import write_image
from excnet.manifest import read_records
from excnet.pipeline import Restorer

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter with this checkout's excnet first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the conveyor


def test_results_in_input_order_or_as_they_finish():
    delays = [0.3, 0.0, 0.1, 0.0, 0.05, 0.0]

    def make_step():
        def step(i: int) -> int:
            time.sleep(delays[i])
            return i
        return step

    assert list(convey(range(6), make_step, workers=3, ordered=True)) == list(range(6))
    finished = list(convey(range(6), make_step, workers=3))
    assert sorted(finished) == list(range(6))
    assert finished != list(range(6))  # the slow first job finishes after quicker ones


def test_work_in_flight_is_bounded_and_each_thread_builds_one_step():
    lock = threading.Lock()
    running = peak = built = 0
    threads: set[int] = set()

    def make_step():
        nonlocal built
        with lock:
            built += 1
            threads.add(threading.get_ident())

        def step(i: int) -> int:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return i
        return step

    assert sorted(convey(range(40), make_step, workers=3)) == list(range(40))
    assert peak == 3
    assert built == len(threads) <= 3


def test_no_jobs_builds_nothing():
    def make_step():
        raise AssertionError("a step was built without work")

    assert list(convey(iter(()), make_step, workers=4)) == []


def test_an_error_in_a_step_ends_the_iteration():
    def make_step():
        def step(i: int) -> int:
            if i == 3:
                raise RuntimeError("boom")
            return i
        return step

    with pytest.raises(RuntimeError, match="boom"):
        list(convey(range(8), make_step, workers=2, ordered=True))


def test_closing_starts_no_more_jobs_and_waits_for_the_running_ones():
    started: list[int] = []
    finished: list[int] = []

    def make_step():
        def step(i: int) -> int:
            started.append(i)
            time.sleep(0.05)
            finished.append(i)
            return i
        return step

    results = convey(range(100), make_step, workers=2)
    assert next(results) in (0, 1)
    results.close()
    assert sorted(started) == sorted(finished)  # nothing left running
    assert len(started) < 10


# --------------------------------------------------------------------------- the commands


def _photos(folder: Path, n: int, shape=(864, 1152)) -> list[Path]:
    """n JPEGs of about 1 MP, different scenes."""
    paths = []
    for i in range(n):
        p = folder / ("sub" if i % 3 == 2 else "") / f"p{i:02d}.jpg"
        write_image(p, make_backlit(*shape, seed=i))
        paths.append(p)
    return paths


@pytest.mark.parametrize(("workers", "jobs", "threads"),
                         [(2, None, 3), (2, 5, 3), (2, 2, 2), (4, 1, 1), (1, 0, 1), (1, 3, 2)])
def test_compute_slots_add_a_writing_thread_only_when_files_wait(workers, jobs, threads):
    slots, n = compute_slots(workers, jobs)
    assert n == threads
    admitted = sum(slots.acquire(blocking=False) for _ in range(workers + 1))
    assert admitted == max(1, min(workers, workers if jobs is None else jobs))


def test_a_file_is_written_outside_its_compute_slot(tmp_path, monkeypatch):
    """The slot is held from reading to encoding and free while the file goes to disk, and
    the record's seconds do not count the wait for a slot."""
    src = tmp_path / "in.png"
    write_image(src, make_backlit(64, 96, seed=4))
    slot = threading.Semaphore(1)
    seen = []
    real = batch.write_bytes

    def write_bytes(path, data, **kw):
        seen.append(slot.acquire(blocking=False))  # free now: another file may compute
        slot.release()
        real(path, data, **kw)

    monkeypatch.setattr(batch, "write_bytes", write_bytes)
    slot.acquire()  # another thread computes: this file waits for its slot
    threading.Timer(0.3, slot.release).start()
    rec = restore_file(Restorer(), src, tmp_path / "out.png", compute=slot)
    assert rec["status"] == "ok" and seen == [True]
    assert rec["seconds"]["decode"] < 0.25  # the 0.3 s wait is not decoding
    assert slot.acquire(blocking=False)  # released at the end


def test_batch_in_threads_writes_the_bytes_of_a_lone_restore(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    photos = _photos(src, 6)
    assert main(["batch", str(src), str(out), "-j", "3"]) == 0
    for p in photos:
        alone = tmp_path / "alone" / p.name
        rec = restore_file(Restorer(), p, alone)
        assert rec["status"] == "ok"
        assert _sha(out / p.relative_to(src)) == _sha(alone), p


def test_restore_in_threads_keeps_input_order_and_bytes(tmp_path, capsys):
    # sizes differ, so the threads finish out of order
    files = []
    for i, shape in enumerate([(900, 1200), (60, 80), (500, 700), (40, 50), (300, 400)]):
        f = tmp_path / "in" / f"f{i}.png"
        write_image(f, make_backlit(*shape, seed=i))
        files.append(f)
    bad = tmp_path / "in" / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    order = [files[0], bad, *files[1:]]
    code = main(["restore", *map(str, order), "-o", str(tmp_path / "out"), "--json", "-j", "3"])
    assert code == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in records] == [str(p) for p in order]
    assert [r["status"] for r in records] == ["ok", "error", "ok", "ok", "ok", "ok"]
    for f in files:
        alone = tmp_path / "alone" / f.name
        restore_file(Restorer(), f, alone)
        assert _sha(tmp_path / "out" / f.name) == _sha(alone)


@pytest.mark.parametrize("command", ["batch", "restore"])
def test_ctrl_c_with_photos_in_flight_leaves_no_temp_and_no_half_output(tmp_path, command):
    src, out = tmp_path / "in", tmp_path / "out"
    photos = _photos(src, 16, shape=(1200, 1600))
    expected = {}
    for p in photos[:4]:
        alone = tmp_path / "alone" / p.name
        restore_file(Restorer(), p, alone)
        expected[p.name] = _sha(alone)
    argv = (["batch", str(src), str(out), "-j", "3"] if command == "batch"
            else ["restore", str(src), "-o", str(out), "-j", "3", "--json"])
    code = "import sys; from excnet.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    # Ctrl-C's SIGINT as a terminal delivers it: a suite started in the background (`make
    # test &`) inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored.
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len([p for p in out.rglob("*.jpg")]) >= 2:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []
    written = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
    assert 2 <= len(written) < len(photos)
    for rel in written:  # every output there is whole: the bytes of a lone restore
        src_file = src / rel
        alone = tmp_path / "alone" / rel.name
        if rel.name not in expected:
            restore_file(Restorer(), src_file, alone)
            expected[rel.name] = _sha(alone)
        assert _sha(out / rel) == expected[rel.name], rel
    if command == "batch":  # what the manifest calls done is there
        for rec in read_records(out / "excnet-manifest.jsonl"):
            assert Path(rec["output"]).is_file()
    else:
        assert all(Path(json.loads(line)["output"]).is_file() for line in stdout.splitlines())


# --------------------------------------------------------------------------- imports


def test_default_restore_imports_no_torch_service_video_or_ray():
    proc = _python("""
        import sys
        import numpy as np
        import excnet
        image = np.full((96, 128, 3), 40, np.uint8)
        image[:, 64:] = 230
        result = excnet.restore(image)
        assert result.image.shape == image.shape and result.phi_s > 0
        assert isinstance(excnet.Curve(0.5, 0.1), excnet.Curve)
        print(" ".join(m for m in ("torch", "fastapi", "uvicorn", "av", "ray", "fsspec")
                       if m in sys.modules))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []


@pytest.mark.parametrize("argv", [["--help"], ["restore", "--help"], ["batch", "--help"]])
def test_help_imports_neither_torch_nor_numpy_nor_cv2(argv):
    proc = _python("""
        import sys
        from excnet.cli import main
        try:
            main(sys.argv[1:])
        except SystemExit:
            pass
        print("HEAVY", *(m for m in ("torch", "numpy", "cv2", "PIL") if m in sys.modules))
    """, *argv)
    assert proc.returncode == 0, proc.stderr
    assert "usage: excnet" in proc.stdout
    assert proc.stdout.rsplit("HEAVY", 1)[1].split() == []


def test_the_raw_reader_loads_no_opencv_before_libraw_starts():
    """A command's first file is decoded while the restorer's modules load: OpenCV's import
    (0.1-0.2 s holding the GIL) must not come before LibRaw's unpack."""
    proc = _python("""
        import sys
        import excnet.imageio.raw
        import excnet.memory
        print("LOADED", *(m for m in ("cv2", "excnet.colour", "torch") if m in sys.modules))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rsplit("LOADED", 1)[1].split() == []


def test_an_empty_batch_starts_no_thread_and_imports_no_torch(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = _python("""
        import sys, threading
        from excnet.cli import main
        code = main(sys.argv[1:])
        print(code, threading.active_count(), "torch" in sys.modules)
    """, "batch", str(tmp_path / "empty"), str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "False"]
    assert "no image files found" in proc.stderr


def test_the_network_solver_still_loads_torch_when_asked(tmp_path):
    proc = _python("""
        import sys
        import numpy as np
        import excnet
        excnet.restore(np.full((64, 64, 3), 60, np.uint8), solver="excnet", max_iters=3)
        print("torch" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]
