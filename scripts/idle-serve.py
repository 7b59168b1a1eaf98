#!/usr/bin/env python3
"""`portolan serve --config-dir` with no proxy: time from start to /readyz and resident memory.

Writes a tree of N Services (one file each: a Service and an EndpointSlice of 10 endpoints, in
10 namespace directories, as crates/files/examples/common/tree.rs does), then for each run
starts the binary on loopback ports, polls /readyz every 5 ms, and reads VmRSS 10 s after ready
and VmHWM (the peak) from /proc. With --dump it then times one GET /debug/config_dump (the
default group, which no proxy is connected to) and reads VmRSS again 10 s later. Prints one line
per run with the 1-minute load average, and the medians.

  scripts/idle-serve.py --bin target/release/portolan --services 10000 --runs 3 [--dump]

The environment is passed on (set MIMALLOC_PURGE_DELAY=250 for the container image's setting).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def manifest(i: int) -> str:
    ns = i % 10
    out = (
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: ns-{ns}\n"
        "spec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\n"
        f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-a\n"
        f"  namespace: ns-{ns}\n  labels:\n    kubernetes.io/service-name: svc-{i}\n"
        "addressType: IPv4\nports:\n- name: http\n  port: 8080\nendpoints:\n"
    )
    for e in range(10):
        out += f'- addresses: ["10.{(i // 250) % 250}.{i % 250}.{e}"]\n  zone: zone-a\n'
    return out


def write_tree(root: str, services: int) -> None:
    for i in range(services):
        sub = os.path.join(root, f"ns-{i % 10}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"svc-{i}.yaml"), "w") as f:
            f.write(manifest(i))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def get(url: str, timeout: float = 60.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return r.status
    except Exception:
        return 0


def one_run(binary: str, tree: str, dump: bool) -> dict:
    http = free_port()
    xds = free_port()
    args = [binary, "serve", "--config-dir", tree, "--xds-address", f"127.0.0.1:{xds}",
            "--http-address", f"127.0.0.1:{http}"]
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = start + 120
        while get(f"http://127.0.0.1:{http}/readyz", timeout=1) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("portolan exited or never got ready")
            time.sleep(0.005)
        ready = time.monotonic() - start
        time.sleep(10)
        out = {
            "ready_s": ready,
            "rss_mib": status_kib(proc.pid, "VmRSS") / 1024,
            "peak_mib": status_kib(proc.pid, "VmHWM") / 1024,
            "load": os.getloadavg()[0],
        }
        if dump:
            t = time.monotonic()
            code = get(f"http://127.0.0.1:{http}/debug/config_dump?group=default", timeout=120)
            out["dump_s"] = time.monotonic() - t
            out["dump_status"] = code
            time.sleep(10)
            out["rss_after_dump_mib"] = status_kib(proc.pid, "VmRSS") / 1024
            out["peak_after_dump_mib"] = status_kib(proc.pid, "VmHWM") / 1024
        return out
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dump", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="idle-serve-") as tree:
        write_tree(tree, a.services)
        runs = []
        for i in range(a.runs):
            r = one_run(a.bin, tree, a.dump)
            runs.append(r)
            print(f"run {i + 1}: " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                flush=True)
        for k in runs[0]:
            values = [r[k] for r in runs]
            print(f"median {k}: {statistics.median(values):.3f} "
                  f"(range {min(values):.3f}-{max(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
