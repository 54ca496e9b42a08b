"""Launcher of the gloo comparison: tutti's gloo backend, raw gloo and PyTorch's
ProcessGroupGloo, side by side in one run (scripts/bench-gloo; figures in
docs/perf.md).

Each side runs as --world-size processes on 127.0.0.1, connected at the
start of each round and then driven command by command (side.hpp) over the
same schedule of sizes (powers of two, 8 B to 64 MiB by default), float32 SUM
allreduce and allgather. The sides take turns size by size, A B C A B C ...,
for --rounds rounds, so that the load of this shared machine weighs on all of
them alike.

Per round, a size's time is the slower rank's median over iterations; the
tables give the median over rounds. Bus bandwidth uses nccl-tests' factors:
allreduce 2(n-1)/n, allgather (n-1)/n, of algbw = size / time, where size is
the allreduce buffer or the whole allgather output (each rank contributes
size / n).

With --crossover 3,4 it also runs raw gloo's ring and bcube allreduce on 3
and 4 ranks and prints where ring starts to beat bcube: the figure behind
kBcubeMaxBytes in src/backends/gloo/algorithms_reduce.cpp.

Standard library only, so it runs under /usr/bin/python3 like torch_side.py.
"""

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--sides", default="tutti,gloo,torch",
                        help="comma list of tutti, gloo, torch, and tutti-ALGO for an allreduce "
                             "algorithm forced through TUTTI_GLOO_ALLREDUCE (tutti-ring, "
                             "tutti-doubling, tutti-gloo-ring, tutti-gloo-bcube)")
    parser.add_argument("--ops", default="allreduce,allgather")
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--min-bytes", type=int, default=8)
    parser.add_argument("--max-bytes", type=int, default=64 << 20)
    parser.add_argument("--max-iters", type=int, default=200)
    parser.add_argument("--min-iters", type=int, default=10)
    parser.add_argument("--crossover", default="",
                        help="comma list of world sizes for the raw gloo ring/bcube crossover")
    parser.add_argument("--crossover-rounds", type=int, default=3)
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"))
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="the Python that has Debian's torch (not the first on PATH)")
    parser.add_argument("--json", help="write every round's figures here")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a side may take to connect or to answer one command")
    return parser.parse_args()


def schedule(args):
    """(bytes, iterations, warmup) per size. About 2^28 bytes moved per size,
    within [min, max] iterations: enough iterations for a stable median where
    each takes microseconds, few where each takes a tenth of a second."""
    steps = []
    nbytes = args.min_bytes
    while nbytes <= args.max_bytes:
        iterations = max(args.min_iters, min(args.max_iters, (1 << 28) // nbytes))
        steps.append((nbytes, iterations, max(1, iterations // 10)))
        nbytes *= 2
    return steps


def free_port():
    # A port the kernel just handed out and released: port 0 cannot be passed
    # to the other ranks, so the launcher picks one for the store.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Side:
    """The world_size processes of one side, connected once and then driven
    command by command (side.hpp). Their stderr goes to a file, so a chatty
    side cannot fill a pipe and stall."""

    def __init__(self, name, args, world_size):
        self.name, self.world_size, self.timeout = name, world_size, args.timeout
        env = dict(os.environ)
        env["MASTER_ADDR"] = "127.0.0.1"
        env["GLOO_SOCKET_IFNAME"] = "lo"  # PyTorch: gloo on the loopback, as the others
        env.pop("TUTTI_GLOO_ALLREDUCE", None)
        if name.startswith("tutti-"):
            env["TUTTI_GLOO_ALLREDUCE"] = name[len("tutti-"):]
        self.store_dir = tempfile.mkdtemp(prefix="gloo_compare_")
        self.errors = tempfile.TemporaryFile(mode="w+")
        port = free_port()
        self.procs = []
        self.buffers = []
        self.closed = False
        for rank in range(world_size):
            cmd = self._command(args, rank, port) + ["--rank", str(rank),
                                                     "--world-size", str(world_size)]
            self.procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=self.errors))
            self.buffers.append(b"")
        for rank in range(world_size):
            self._expect(rank, "READY")

    def _command(self, args, rank, port):
        bench = os.path.join(args.build_dir, "bench", "gloo_compare")
        if self.name.startswith("tutti"):
            return [os.path.join(bench, "gloo_compare_tutti"), "--port", str(port)]
        if self.name == "gloo":
            return [os.path.join(bench, "gloo_compare_raw_gloo"), "--store-dir", self.store_dir]
        if self.name == "torch":
            return [args.python, os.path.join(HERE, "torch_side.py"), "--port", str(port)]
        raise SystemExit(f"unknown side '{self.name}'")

    def _fail(self, what):
        self.close(kill=True)
        self.errors.seek(0)
        raise SystemExit(f"{self.name}: {what}\n{self.errors.read()}")

    def _readline(self, rank):
        # select() and os.read() rather than readline(), so that a side that
        # hangs or dies fails the run at the deadline instead of stalling it.
        deadline = time.monotonic() + self.timeout
        proc = self.procs[rank]
        while b"\n" not in self.buffers[rank]:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"rank {rank} did not answer within {self.timeout:.0f} s")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    self._fail(f"rank {rank} exited ({proc.wait()})")
                self.buffers[rank] += chunk
        line, _, self.buffers[rank] = self.buffers[rank].partition(b"\n")
        return line.decode()

    def _expect(self, rank, prefix):
        line = self._readline(rank)
        if not line.startswith(prefix):
            self._fail(f"rank {rank} said '{line}', expected {prefix}")
        return line

    def _send(self, line):
        for proc in self.procs:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()

    def run(self, op, variant, step):
        """Seconds: the slower rank's median per-iteration time."""
        nbytes, iterations, warmup = step
        self._send(f"run {op} {variant} {nbytes} {iterations} {warmup}")
        slowest = 0.0
        for rank in range(self.world_size):
            fields = self._expect(rank, "RESULT ").split()
            slowest = max(slowest, int(fields[4]) / 1e9)
        return slowest

    def close(self, kill=False):
        if self.closed:
            return
        self.closed = True
        for proc in self.procs:
            try:
                if not kill:
                    proc.stdin.write(b"quit\n")
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=None if kill else 60)
            except subprocess.TimeoutExpired:
                kill = True
            if kill and proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.store_dir, ignore_errors=True)
        if not kill and any(p.returncode != 0 for p in self.procs):
            self.errors.seek(0)
            raise SystemExit(f"{self.name} failed at exit:\n{self.errors.read()}")


def label_of(side, op, variant):
    if side == "gloo":
        return f"gloo-{variant}" if op == "allreduce" else "gloo"
    return side


def measurements(side, ops):
    """(op, variant) pairs a side runs: raw gloo runs both allreduce
    algorithms; the variant is only a label elsewhere."""
    pairs = []
    for op in ops:
        if side == "gloo" and op == "allreduce":
            pairs += [(op, "ring"), (op, "bcube")]
        elif side == "gloo" or side == "torch":
            pairs.append((op, "ring"))
        else:
            pairs.append((op, side.split("-")[1] if "-" in side else "auto"))
    return pairs


def run_rounds(names, args, world_size, steps, ops, rounds):
    """{(label, op, bytes): [seconds per round]}. Each round starts every side
    afresh (new processes, so each round samples anew where the scheduler puts
    their threads, which moves small-message latency by up to 2x here), then
    for each size the sides take turns, in an order that rotates from round
    to round so that none always runs first."""
    samples = {}
    for r in range(rounds):
        start = time.monotonic()
        sides = []
        try:
            for name in names:
                sides.append(Side(name, args, world_size))
            order = sides[r % len(sides):] + sides[:r % len(sides)]
            for step in steps:
                for side in order:
                    for op, variant in measurements(side.name, ops):
                        key = (label_of(side.name, op, variant), op, step[0])
                        samples.setdefault(key, []).append(side.run(op, variant, step))
        finally:
            for side in sides:
                side.close()
        print(f"# round {r + 1}/{rounds} on {world_size} ranks: "
              f"{time.monotonic() - start:.0f} s, load {os.getloadavg()[0]:.1f}",
              file=sys.stderr, flush=True)
    return samples


def size_text(nbytes):
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def busbw(op, nbytes, seconds, n):
    factor = 2 * (n - 1) / n if op == "allreduce" else (n - 1) / n
    return nbytes / seconds * factor / 1e9


def median_of(samples, key):
    values = samples.get(key)
    return statistics.median(values) if values else None


def fmt_us(seconds):
    return "" if seconds is None else f"{seconds * 1e6:,.0f}"


def fmt_ratio(a, b):
    return "" if a is None or b is None else f"{a / b:.2f}"


def print_table(op, samples, steps, n, columns):
    """One markdown table; returns the sizes that miss each goal."""
    shown = [(label, title) for label, title in columns
             if any((label, op, b) in samples for b, _, _ in steps)]
    baseline = "gloo-ring" if op == "allreduce" else "gloo"
    header = ["size"] + [f"{t} µs" for _, t in shown]
    header += [f"tutti/{'gloo ring' if op == 'allreduce' else 'gloo'}", "torch/tutti"]
    header += [f"busbw {t} GB/s" for _, t in shown]
    print(f"\n{op}, {n} ranks, float32 SUM" if op == "allreduce" else f"\n{op}, {n} ranks")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" + "---:|" * (len(header) - 1))
    misses = {"slower than gloo by > 5%": [], "< 1.5x torch up to 64 KiB": []}
    for nbytes, _, _ in steps:
        t = {label: median_of(samples, (label, op, nbytes)) for label, _ in shown}
        tutti, base, torch = t.get("tutti"), t.get(baseline), t.get("torch")
        row = [size_text(nbytes)] + [fmt_us(t[label]) for label, _ in shown]
        row += [fmt_ratio(tutti, base), fmt_ratio(torch, tutti)]
        row += ["" if t[label] is None else f"{busbw(op, nbytes, t[label], n):.3f}"
                for label, _ in shown]
        print("| " + " | ".join(row) + " |")
        if tutti is not None and base is not None and tutti > 1.05 * base:
            misses["slower than gloo by > 5%"].append(size_text(nbytes))
        if (tutti is not None and torch is not None and nbytes <= 64 << 10
                and torch < 1.5 * tutti):
            misses["< 1.5x torch up to 64 KiB"].append(size_text(nbytes))
    for goal, sizes in misses.items():
        print(f"{op}: {goal}: " + (", ".join(sizes) if sizes else "none"))
    return misses


def print_crossover(samples, steps, n):
    print(f"\nallreduce, raw gloo, {n} ranks: ring against bcube")
    print("| size | ring µs | bcube µs | ring/bcube |")
    print("|---|---:|---:|---:|")
    last_bcube_win = None
    for nbytes, _, _ in steps:
        ring = median_of(samples, ("gloo-ring", "allreduce", nbytes))
        bcube = median_of(samples, ("gloo-bcube", "allreduce", nbytes))
        if ring is None or bcube is None:
            continue
        if bcube < ring:
            last_bcube_win = nbytes
        print(f"| {size_text(nbytes)} | {fmt_us(ring)} | {fmt_us(bcube)} | "
              f"{ring / bcube:.2f} |")
    print(f"{n} ranks: largest size where bcube beats ring: "
          f"{size_text(last_bcube_win) if last_bcube_win else 'none'}")


def main():
    args = parse_args()
    steps = schedule(args)
    ops = [op for op in args.ops.split(",") if op]
    sides = [s for s in args.sides.split(",") if s]
    n = args.world_size
    print("# schedule (bytes:iterations:warmup): "
          + " ".join(f"{b}:{i}:{w}" for b, i, w in steps), file=sys.stderr)
    samples = run_rounds(sides, args, n, steps, ops, args.rounds)
    dump = {"world_size": n, "rounds": args.rounds, "schedule": steps,
            "main": [[list(k), v] for k, v in samples.items()], "crossover": {}}

    print(f"{args.rounds} round(s), sides taking turns size by size ({', '.join(sides)}); "
          f"medians over rounds of the slower rank's median per-iteration time")
    columns = [("tutti", "tutti"), ("tutti-ring", "tutti ring"),
               ("tutti-doubling", "tutti doubling"), ("tutti-gloo-ring", "tutti gloo-ring"),
               ("tutti-gloo-bcube", "tutti gloo-bcube"),
               ("gloo-ring", "gloo ring"), ("gloo-bcube", "gloo bcube"), ("gloo", "gloo"),
               ("torch", "torch")]
    for op in ops:
        print_table(op, samples, steps, n, columns)
    if "gloo" in sides and "allreduce" in ops:
        print_crossover(samples, steps, n)
    save(args, dump)

    for world in [int(w) for w in args.crossover.split(",") if w]:
        cross = run_rounds(["gloo"], args, world, steps, ["allreduce"],
                           args.crossover_rounds)
        dump["crossover"][world] = [[list(k), v] for k, v in cross.items()]
        print_crossover(cross, steps, world)
        save(args, dump)


def save(args, dump):
    sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dump, f, indent=1)


if __name__ == "__main__":
    main()
