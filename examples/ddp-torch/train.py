"""A PyTorch DistributedDataParallel trainer that follows tutti's conventions, like examples/ddp-node.

tutti starts one process per rank with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT, CUDA_VISIBLE_DEVICES), so init_process_group() with the default env:// just works: NCCL on GPUs,
gloo on CPUs. On top of that it:

- checkpoints every CHECKPOINT_EVERY steps into TUTTI_CHECKPOINT_DIR (rank 0 writes, atomically: a .tmp file
  renamed), and resumes from TUTTI_RESUME_FROM when tutti restarts the gang;
- reports progress by printing one-line JSON records on stdout: {"tutti": {"step", "loss", "samples_per_s",
  "checkpoint"}};
- handles the stop signal (TUTTI_STOP_SIGNAL, SIGTERM by default): the flag is agreed on by all ranks at the next
  step boundary (an all-reduce), so the whole gang stops after the same step; rank 0 checkpoints and every rank
  exits 0 within the grace period;
- is deterministic: the data of step s on rank r comes from a generator seeded with (s, r), so a run that was
  interrupted and resumed ends with exactly the same weights as one that was not (on CPU; cuDNN/NCCL reductions
  may differ in the last bits on GPUs). The last log line is a digest of the final weights.

Environment knobs: STEPS (default 200), BATCH (256), CHECKPOINT_EVERY (50), STEP_MS (0: extra sleep per step).
"""
import hashlib
import json
import os
import signal
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

FEATURES = 64


def report(**values) -> None:
    print(json.dumps({"tutti": values}), flush=True)


def batch(step: int, rank: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step * 100_003 + rank)
    x = torch.randn(size, FEATURES, generator=generator)
    true_w = torch.linspace(-1.0, 1.0, FEATURES)
    y = (x @ true_w + 0.1 * torch.randn(size, generator=generator)).unsqueeze(1)
    return x.to(device), y.to(device)


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    steps = int(os.environ.get("STEPS", "200"))
    batch_size = int(os.environ.get("BATCH", "256"))
    checkpoint_every = int(os.environ.get("CHECKPOINT_EVERY", "50"))
    step_ms = float(os.environ.get("STEP_MS", "0"))
    checkpoint_dir = os.environ.get("TUTTI_CHECKPOINT_DIR", "checkpoints")
    stop_signal = getattr(signal, os.environ.get("TUTTI_STOP_SIGNAL", "SIGTERM"))

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.use_deterministic_algorithms(not use_cuda)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    step = 0
    resume = os.environ.get("TUTTI_RESUME_FROM")
    if resume:
        state = torch.load(resume, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"[rank {rank}] resuming from {resume} at step {step}", flush=True)
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)

    stop_requested = False

    def on_stop(signum, _frame):
        nonlocal stop_requested
        stop_requested = True
        print(f"[rank {rank}] received {signal.Signals(signum).name}: stopping after step {step}", flush=True)

    signal.signal(stop_signal, on_stop)

    def checkpoint(why: str) -> None:
        if rank != 0:
            return
        os.makedirs(checkpoint_dir, exist_ok=True)
        path = os.path.join(checkpoint_dir, f"step-{step:06d}.pt")
        torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, path + ".tmp")
        os.replace(path + ".tmp", path)
        report(step=step, checkpoint=path)
        print(f"[rank 0] checkpoint {path} ({why})", flush=True)

    # Where this rank runs, as its backend says (TUTTI_NODE: on Slurm, the node srun started it on).
    print(f"[rank {rank}] joined the group as rank {rank}/{world} on {os.environ.get('TUTTI_NODE', 'this machine')}", flush=True)
    if rank == 0:
        print(f"[rank 0] world of {world} ranks on {'cuda' if use_cuda else 'cpu'} ready at step {step} of {steps}", flush=True)
    started = time.perf_counter()
    since = step
    while step < steps:
        # Every rank learns whether any rank was asked to stop, so the gang stops after the same step.
        flag = torch.tensor([1.0 if stop_requested else 0.0], device=device)
        dist.all_reduce(flag)
        if flag.item() > 0:
            checkpoint(f"stop signal {signal.Signals(stop_signal).name}")
            dist.barrier()
            dist.destroy_process_group()
            return
        x, y = batch(step, rank, batch_size, device)
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 10 == 0 or step == steps:
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            if rank == 0:
                elapsed = time.perf_counter() - started
                report(step=step, loss=mean_loss.item() / world, samples_per_s=round((step - since) * batch_size * world / max(elapsed, 1e-9), 1))
        if step % checkpoint_every == 0 or step == steps:
            checkpoint(f"every {checkpoint_every} steps")
        if step_ms > 0:
            time.sleep(step_ms / 1000)
    dist.barrier()
    if rank == 0:
        print(f"final weights digest: {digest(model)}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
