"""The PyTorch side of the gloo comparison: one rank of torch.distributed with
backend "gloo" (PyTorch 1.13's ProcessGroupGloo, Debian python3-torch).

Same command line, commands on standard input, checks and RESULT lines as
the C++ sides (side.hpp), so compare.py drives the three alike. Each timed
iteration is a synchronous call (async_op=False waits on the Work), the way a
user calls it. Run with /usr/bin/python3: Debian's torch is installed for the
system Python only.

  torch_side.py --rank R --world-size N --port P
"""

import argparse
import sys
import time

import torch
import torch.distributed as dist


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


class Command:
    """One "run <op> <variant> <bytes> <iterations> <warmup>" line."""

    def __init__(self, line):
        verb, self.op, self.variant, *numbers = line.split()
        if verb != "run" or len(numbers) != 3:
            raise ValueError(f"malformed command '{line.strip()}'")
        self.nbytes, self.iterations, self.warmup = (int(x) for x in numbers)


def measure(command, run):
    """Warm-up, then the median of per-iteration times (see side.hpp)."""
    for _ in range(command.warmup):
        run()
    times = []
    for _ in range(command.iterations):
        start = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - start)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) // 2
    print(f"RESULT {command.op} {command.variant} {command.nbytes} {median} {times[0]} "
          f"{command.iterations}", flush=True)


def expect_equal(command, got, want):
    if not torch.equal(got, want):
        bad = (got != want).nonzero()[0].item()
        raise RuntimeError(f"{command.op} of {command.nbytes} bytes: element {bad} is "
                           f"{got[bad].item()}, expected {want[bad].item()}")


def allgather_call(output, input_, world_size):
    """all_gather_into_tensor where ProcessGroupGloo serves it; else the list
    form (gloo's own allgather either way, the list form adds a copy out)."""
    try:
        dist.all_gather_into_tensor(output, input_)
        return "into_tensor", lambda: dist.all_gather_into_tensor(output, input_)
    except RuntimeError as e:
        if "does not support" not in str(e) and "no support" not in str(e):
            raise
    chunks = list(output.chunk(world_size))
    dist.all_gather(chunks, input_)
    return "list", lambda: dist.all_gather(chunks, input_)


def allreduce(command, rank, n):
    tensor = torch.full((max(1, command.nbytes // 4),), float(rank + 1), dtype=torch.float32)
    dist.all_reduce(tensor)
    expect_equal(command, tensor, torch.full_like(tensor, float(n * (n + 1) // 2)))
    # Zeros keep the timed sums finite; the values do not change the cost.
    tensor.zero_()
    measure(command, lambda: dist.all_reduce(tensor))


def allgather(command, rank, n):
    per_rank = max(1, command.nbytes // 4 // n)
    input_ = torch.full((per_rank,), float(rank + 1), dtype=torch.float32)
    output = torch.empty(per_rank * n, dtype=torch.float32)
    form, run = allgather_call(output, input_, n)
    expect_equal(command, output,
                 torch.arange(1, n + 1, dtype=torch.float32).repeat_interleave(per_rank))
    measure(command, run)
    return form


def main():
    args = parse_args()
    dist.init_process_group("gloo", init_method=f"tcp://{args.host}:{args.port}",
                            rank=args.rank, world_size=args.world_size)
    print("READY", flush=True)
    forms = set()
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        command = Command(line)
        if command.op == "allreduce":
            allreduce(command, args.rank, args.world_size)
        elif command.op == "allgather":
            forms.add(allgather(command, args.rank, args.world_size))
        else:
            raise ValueError(f"unknown op '{command.op}'")
    if forms and args.rank == 0:
        print(f"torch {torch.__version__}: allgather through {', '.join(sorted(forms))}",
              file=sys.stderr)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
