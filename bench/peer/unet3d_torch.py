#!/usr/bin/python3
"""PyTorch peer of voxseg's training step (src/cli/bench/train.ts).

The same 3D U-Net as src/nn/unet3d.ts — per level two Conv3d(k3, p1) + ReLU, MaxPool3d(2)
between levels, ConvTranspose3d(2, stride 2) up, concatenation [skip, up] in that order, a
1x1x1 head — with parameter names matching voxseg's state_dict, so voxseg's initial weights
load as they are. The loss is voxseg's default: Tversky (alpha 0.3, beta 0.7, per sample,
background excluded) on the softmax plus cross-entropy on the logits. Plain Adam.

Modes (`--mode`, default `train`), each printing one JSON line:

- `train`: warm-up + timed Adam steps on one batch (`--batch`: image, labels; batch size from
  its shape) → {"median_ms", "losses" (one per step, before its update), "rss_before_mb"
  (VmRSS after the warm-up), "rss_peak_mb" (peak resident memory of the timed steps: reset
  after the warm-up, VmHWM after the last step, as voxseg's side measures it in its own fresh
  process), "torch", "threads", "steps", "warmup"}.
- `forward`: warm-up + timed forward passes under `torch.inference_mode()` → {"median_ms",
  "torch", "threads", "steps", "warmup"}; `--logits-out F` writes the logits as raw float32.
- `train-short`: one Adam step per batch of `--batches` (train_image [S, B, C, D, H, W],
  train_labels [S, B, D, H, W]), then the arg-max labels of every held-out patch (val_image
  [V, C, D, H, W]) written to `--pred-out` as raw uint8 → {"losses", "seconds" (steps 2…S),
  "torch", "threads"}. bench/peer/parity.ts drives it.

`--device cuda` runs on a CUDA GPU in plain fp32 (TF32 off; `--tf32` turns it on), timed to
completion.

  /usr/bin/python3 bench/peer/unet3d_torch.py --weights w.safetensors --batch b.safetensors
"""

import argparse
import json
import statistics
import struct
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:  # reported by the bench as the reason the peer was skipped
    print(f"torch is not importable: {e} (apt-get install python3-torch)", file=sys.stderr)
    sys.exit(3)

DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def load_safetensors(path):
    """Tensors of a safetensors file, with the `safetensors` module or by hand."""
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = bytearray(data[8 + n:])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        count = (end - begin) // torch.empty((), dtype=dtype).element_size()
        t = torch.frombuffer(body, dtype=dtype, count=count, offset=begin)
        out[name] = t.reshape(entry["shape"]).clone()
    return out


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet3D(nn.Module):
    def __init__(self, in_channels, classes, base, depth):
        super().__init__()
        ch = [base * 2 ** level for level in range(depth)]
        self.depth = depth
        self.enc = nn.ModuleList(
            Block(in_channels if level == 0 else ch[level - 1], ch[level])
            for level in range(depth))
        # up.{l} and dec.{l} for l = 0 .. depth-2, as in voxseg's names.
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(ch[level + 1], ch[level], 2, stride=2)
            for level in range(depth - 1))
        self.dec = nn.ModuleList(Block(2 * ch[level], ch[level]) for level in range(depth - 1))
        self.head = nn.Conv3d(ch[0], classes, 1)

    def forward(self, x):
        skips = []
        h = x
        for level in range(self.depth):
            if level > 0:
                h = F.max_pool3d(h, 2)
            h = self.enc[level](h)
            skips.append(h)
        for level in range(self.depth - 2, -1, -1):
            h = self.up[level](h)
            h = torch.cat([skips[level], h], dim=1)
            h = self.dec[level](h)
        return self.head(h)


def tversky_ce(logits, labels, alpha, beta, smooth):
    """voxseg's default loss: per-sample Tversky over foreground classes + mean cross-entropy."""
    classes = logits.shape[1]
    probs = torch.softmax(logits, dim=1).flatten(2)              # [N, C, V]
    onehot = F.one_hot(labels.flatten(1), classes).permute(0, 2, 1).to(probs.dtype)
    tp = (probs * onehot).sum(2)
    fp = (probs * (1 - onehot)).sum(2)
    fn = ((1 - probs) * onehot).sum(2)
    ti = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)  # [N, C]
    tversky = (1 - ti[:, 1:]).mean()
    return tversky + F.cross_entropy(logits, labels)


def proc_status_mb(field):
    """A field of /proc/self/status in MB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(device):
    """Waits for queued GPU work, so a step is timed to completion."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_train(model, x, labels, a):
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    losses, times = [], []
    peak_reset, rss_before = False, None
    for i in range(a.warmup + a.steps):
        if i == a.warmup:  # peak memory of the timed steps, measured as voxseg's side is
            rss_before = proc_status_mb("VmRSS")
            peak_reset = reset_peak_rss()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = tversky_ce(model(x), labels, a.alpha, a.beta, a.smooth)
        loss.backward()
        opt.step()
        sync(x.device)
        ms = (time.perf_counter() - t0) * 1e3
        losses.append(loss.item())
        if i >= a.warmup:
            times.append(ms)
    return {"median_ms": statistics.median(times), "losses": losses,
            "rss_before_mb": rss_before,
            "rss_peak_mb": proc_status_mb("VmHWM") if peak_reset else None}


def timed_forward(model, x, a):
    times = []
    with torch.inference_mode():
        for i in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            logits = model(x)
            sync(x.device)
            ms = (time.perf_counter() - t0) * 1e3
            if i == 0 and a.logits_out:
                logits.cpu().contiguous().numpy().astype("<f4").tofile(a.logits_out)
            if i >= a.warmup:
                times.append(ms)
    return {"median_ms": statistics.median(times)}


def train_short(model, batches, a):
    """One Adam step per stored batch, then arg-max labels of the held-out patches."""
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    images, targets = batches["train_image"].float(), batches["train_labels"].long()
    losses = []
    t0 = time.perf_counter()
    for step in range(images.shape[0]):
        if step == 1:  # the first step warms up; voxseg's side times the same steps
            sync(images.device)
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = tversky_ce(model(images[step]), targets[step], a.alpha, a.beta, a.smooth)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    sync(images.device)
    seconds = time.perf_counter() - t0
    val = batches["val_image"].float()
    with torch.inference_mode():
        pred = torch.cat([model(val[i:i + 1]).argmax(1) for i in range(val.shape[0])])
    pred.to(torch.uint8).cpu().numpy().tofile(a.pred_out)
    return {"losses": losses, "seconds": seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["train", "forward", "train-short"], default="train")
    p.add_argument("--weights", required=True)
    p.add_argument("--batch", help="train, forward: safetensors with image (and labels)")
    p.add_argument("--batches", help="train-short: safetensors with train_*/val_* tensors")
    p.add_argument("--logits-out", help="forward: write the logits here (raw float32)")
    p.add_argument("--pred-out", help="train-short: write held-out labels here (raw uint8)")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=0.3)
    p.add_argument("--beta", type=float, default=0.7)
    p.add_argument("--smooth", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    p.add_argument("--tf32", action="store_true", help="cuda: allow TF32 convolutions/matmuls")
    a = p.parse_args()
    if a.mode == "train-short" and not (a.batches and a.pred_out):
        p.error("--mode train-short needs --batches and --pred-out")
    if a.mode != "train-short" and not a.batch:
        p.error(f"--mode {a.mode} needs --batch")

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":  # plain fp32 as voxseg computes, unless --tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
    model = UNet3D(a.in_channels, a.classes, a.base, a.depth)
    model.load_state_dict(load_safetensors(a.weights), strict=True)
    model.to(dev)
    if a.mode == "train-short":
        batches = {k: v.to(dev) for k, v in load_safetensors(a.batches).items()}
        out = train_short(model, batches, a)
    else:
        batch = load_safetensors(a.batch)
        x = batch["image"].float().to(dev)
        if a.mode == "train":
            out = timed_train(model, x, batch["labels"].long().to(dev), a)
        else:
            out = timed_forward(model, x, a)
        out.update({"warmup": a.warmup, "steps": a.steps})
    out.update({"torch": torch.__version__, "threads": torch.get_num_threads(),
                "device": a.device, "tf32": a.tf32 and dev.type == "cuda"})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
