r"""Start a local multi-worker training job: N processes on 127.0.0.1, each with its own TF_CONFIG.

    .venv/bin/python scripts/launch_multi_worker.py --workers=2 --log_dir=/tmp/mw -- \
        python -m training.main --distribution=multi_worker --data_dir=D --workdir=W --model=cnn

Everything after `--` is the command every worker runs (the same command on every host, as on a real
cluster); the launcher adds TF_CONFIG = {"cluster": {"worker": [127.0.0.1:p0, ...]}, "task": {"type":
"worker", "index": i}}. Worker 0 is the chief: it writes WORKDIR, the others WORKDIR/workers/worker-N.
Each worker's output goes to LOG_DIR/worker-N.log. If one worker fails, the others are stopped (a
collective job cannot finish without all of them) and the exit status is the failed worker's.

On real hosts, set TF_CONFIG the same way on each machine with their addresses, or let the cluster manager
do it (Vertex AI, Kubernetes' TFJob and Slurm cluster resolvers write it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(command: list[str], workers: int, log_dir: str, timeout: float) -> int:
    os.makedirs(log_dir, exist_ok=True)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    processes = []
    for index in range(workers):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(os.path.join(log_dir, f"worker-{index}.log"), "w")
        processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    print(f"launched {workers} workers {cluster['worker']}; logs in {log_dir}", flush=True)
    deadline = time.monotonic() + timeout
    status = 0
    try:
        while any(p.poll() is None for p, _ in processes):
            failed = [(i, p.returncode) for i, (p, _) in enumerate(processes) if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                index, status = failed[0] if failed else (-1, 124)
                reason = f"worker {index} exited with {status}" if failed else f"timeout after {timeout:.0f} s"
                print(f"{reason}: stopping the others", file=sys.stderr, flush=True)
                break
            time.sleep(0.5)
    finally:
        for p, log in processes:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
    for index, (p, _) in enumerate(processes):
        print(f"worker {index}: exit {p.returncode}")
        status = status or p.returncode
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log_dir", default="multi_worker_logs")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before every worker is stopped")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command each worker runs")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    if command[0] == "python":
        command[0] = sys.executable  # the launcher's interpreter (the project's .venv)
    sys.exit(launch(command, args.workers, args.log_dir, args.timeout))


if __name__ == "__main__":
    main()
