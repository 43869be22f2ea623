#!/usr/bin/python3
"""PyTorch peer of voxseg's sliding-window inference (src/cli/bench/infer.ts).

The identical network (unet3d_torch.UNet3D, voxseg's weights loaded by state_dict name) run the
way voxseg runs it: windows of the patch size at the same start positions (evenly spaced,
step at most floor(patch * (1 - overlap))), several per batch, softmax, a Gaussian importance
map with sigma = patch / 8 per axis, blended over the whole volume like MONAI's
sliding_window_inference (full-volume float accumulators), then arg-max.

Measured as voxseg's side is (src/cli/bench/infer.ts): `--warmup` whole predictions of a
volume that makes exactly one batch of windows (patch size, x widened to `--batch` windows)
run untimed first; the timer covers the CT window (`--window lo,hi`: clip and scale to
[0, 1], as voxseg's normalisation does inside its prediction), the sliding window, blending
and arg-max;
the peak resident memory is reset (/proc/self/clear_refs) right before the timed part and read
(VmHWM) right after it, as on voxseg's side.

Prints one JSON line: {"seconds", "voxels_per_s", "windows", "rss_before_mb", "rss_peak_mb",
"torch", "threads", "warmup"}; writes the labels (uint8, z-y-x C order) to --labels-out when
given.

  /usr/bin/python3 bench/peer/sliding_window_torch.py --weights w.safetensors \
      --volume v.safetensors --patch 64,64,64 --overlap 0.5 --batch 2 --window=-1000,400
"""

import argparse
import json
import math
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet3d_torch import (  # noqa: E402
    UNet3D, load_safetensors, proc_status_mb, reset_peak_rss, torch)


def window_starts(size, patch, overlap):
    """voxseg's windowStarts (src/infer/gaussian.ts), JS rounding (half up) included."""
    if size <= patch:
        return [0]
    max_step = max(1, math.floor(patch * (1 - overlap)))
    n = math.ceil((size - patch) / max_step) + 1
    span = size - patch
    return [math.floor(i * span / (n - 1) + 0.5) for i in range(n)]


def gaussian_axis(n):
    sigma = n / 8
    c = (n - 1) / 2
    g = torch.tensor([math.exp(-((i - c) ** 2) / (2 * sigma * sigma)) for i in range(n)],
                     dtype=torch.float64)
    return g / g.max()


def predict(model, image, a):
    """Labels of `image` (HU, [D, H, W]): CT window (--window), sliding window, blending, arg-max."""
    pd, ph, pw = (int(s) for s in a.patch.split(","))
    D, H, W = image.shape
    if a.window:
        lo, hi = (float(v) for v in a.window.split(","))
        image = ((image - lo) / (hi - lo)).clamp_(0, 1)
    PD, PH, PW = max(D, pd), max(H, ph), max(W, pw)
    padded = torch.full((PD, PH, PW), a.pad_value, dtype=torch.float32)
    padded[:D, :H, :W] = image
    weights = (gaussian_axis(pd)[:, None, None] * gaussian_axis(ph)[None, :, None]
               * gaussian_axis(pw)[None, None, :]).float()
    acc = torch.zeros((a.classes, PD, PH, PW), dtype=torch.float32)
    wsum = torch.zeros((PD, PH, PW), dtype=torch.float32)
    starts = [(z, y, x) for z in window_starts(PD, pd, a.overlap)
              for y in window_starts(PH, ph, a.overlap)
              for x in window_starts(PW, pw, a.overlap)]
    with torch.inference_mode():
        for b0 in range(0, len(starts), a.batch):
            batch = starts[b0:b0 + a.batch]
            x = torch.stack([padded[z:z + pd, y:y + ph, x:x + pw] for z, y, x in batch])[:, None]
            probs = torch.softmax(model(x), dim=1)
            for (z, y, x), pr in zip(batch, probs):
                acc[:, z:z + pd, y:y + ph, x:x + pw] += pr * weights
                wsum[z:z + pd, y:y + ph, x:x + pw] += weights
        return torch.argmax(acc[:, :D, :H, :W] / wsum[:D, :H, :W], dim=0).to(torch.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--volume", required=True, help="safetensors with 'image' [D, H, W]")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--patch", default="64,64,64")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--pad-value", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--labels-out")
    p.add_argument("--window", help="lo,hi: clip to [lo, hi] and scale to [0, 1] (timed)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed predictions of one batch of windows first")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    model = UNet3D(a.in_channels, a.classes, a.base, a.depth).eval()
    model.load_state_dict(load_safetensors(a.weights), strict=True)
    image = load_safetensors(a.volume)["image"].float()
    pd, ph, pw = (int(s) for s in a.patch.split(","))
    D, H, W = image.shape

    # Warm-up, as voxseg's side: whole predictions of a volume that is one batch of windows.
    warm = torch.zeros((pd, ph, pw + (a.batch - 1) * max(1, math.floor(pw * (1 - a.overlap)))))
    for _ in range(a.warmup):
        predict(model, warm, a)

    rss_before = proc_status_mb("VmRSS")
    peak_reset = reset_peak_rss()
    t0 = time.perf_counter()
    labels = predict(model, image, a)
    seconds = time.perf_counter() - t0
    rss_peak = proc_status_mb("VmHWM") if peak_reset else None

    if a.labels_out:
        with open(a.labels_out, "wb") as f:
            f.write(labels.contiguous().numpy().tobytes())
    print(json.dumps({
        "seconds": seconds,
        "voxels_per_s": D * H * W / seconds,
        "windows": math.prod(len(window_starts(max(n, p), p, a.overlap))
                             for n, p in zip(image.shape, (pd, ph, pw))),
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "warmup": a.warmup,
    }))


if __name__ == "__main__":
    main()
