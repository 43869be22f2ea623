"""Writes plateau_pytorch.json: ReduceLROnPlateau runs recorded from PyTorch itself.

Run with Debian's interpreter and package (`apt-get install python3-torch`):
    /usr/bin/python3 tests/train/plateau_pytorch.py > tests/train/plateau_pytorch.json
    deno fmt tests/train/plateau_pytorch.json
schedules_test.ts replays each case through voxseg's ReduceLROnPlateau and expects the same
learning rate after every step, bit for bit.
"""
import json
import random
import sys

import torch

random.seed(1)
cases = []
for _ in range(30):
    opts = dict(
        mode=random.choice(["min", "max"]),
        factor=random.choice([0.1, 0.5, 0.3, 0.9]),
        patience=random.randint(0, 4),
        threshold=random.choice([0, 1e-4, 0.01, 0.1]),
        threshold_mode=random.choice(["rel", "abs"]),
        cooldown=random.randint(0, 3),
        min_lr=random.choice([0, 1e-5, 1e-3]),
        eps=random.choice([1e-8, 0, 1e-4]),
    )
    lr = random.choice([1.0, 1e-3, 0.01, 3e-4])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **opts)
    # Plateaus (repeats), near-ties around the threshold, and real moves.
    metrics, m = [], round(random.uniform(-1, 1), 4)
    for _ in range(24):
        r = random.random()
        if r < 0.4:
            pass
        elif r < 0.5:
            m *= 1 + random.choice([-1, 1]) * random.choice([1e-5, 1e-4, 1e-3, 0.01, 0.1])
        else:
            m = round(m + random.uniform(-0.2, 0.2), 4)
        metrics.append(m)
    lrs = []
    for x in metrics:
        scheduler.step(x)
        lrs.append(opt.param_groups[0]["lr"])
    cases.append(dict(lr=lr, options=opts, metrics=metrics, lrs=lrs))
json.dump({"torch": torch.__version__, "cases": cases}, sys.stdout, indent=None)
print()
