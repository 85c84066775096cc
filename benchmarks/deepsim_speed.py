"""Training speed and peak memory of DeePSiM generators on the CPU.

Each configuration runs in a fresh child process (so its peak resident memory is its own):
build the model, the comparator and the discriminator, take ``--warmup`` iterations, then time
``--iterations`` more. For every generator the full DeePSiM loss (feature + adversarial +
image) is timed against the image-loss-only baseline of the same generator and data, in the
same run, and the ratio is printed (there is no peer PyTorch DeePSiM implementation to time).

    python benchmarks/deepsim_speed.py                      # batch 64, as the paper
    python benchmarks/deepsim_speed.py --batch-size 8 --iterations 2 --only fc6-64

Configurations: ``fc6-227`` (Table 1 FC6 inverter, 227x227), ``fc6-64`` (the same design at
64x64), ``ae-64`` (the 64x64 autoencoder of the demo, width 0.5). Random AlexNet weights are
used for the inverted layer (the fc layers of the shared weight file are zeros anyway); the
comparator is AlexNet conv5 with ImageNet weights when the file is present, else random.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = {
    "fc6-227": dict(task="invert", layer="fc6", size=227, width=1.0),
    "fc6-64": dict(task="invert", layer="fc6", size=64, width=1.0),
    "ae-64": dict(task="autoencoder", layer="fc6", size=64, width=0.5),
}


def child(spec: dict) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from percepmetric.deepsim.networks import alexnet_weights_path
    from percepmetric.deepsim.train import DeepSimConfig, ImageCrops, Trainer

    rng = np.random.default_rng(0)
    size = spec["size"]
    images = [rng.integers(0, 256, (size + 16, size + 16, 3), dtype=np.uint8) for _ in range(8)]
    data = ImageCrops(images, size)
    config = DeepSimConfig(task=spec["task"], layer=spec["layer"], size=size, width=spec["width"],
                         discriminator_width=spec["width"], batch_size=spec["batch_size"], loss=spec["loss"],
                         pretrained=False, comparator_pretrained=alexnet_weights_path().is_file(),
                         out=spec["out"], checkpoint_every=0, iterations=10**9, device="cpu")
    trainer = Trainer(config, data)
    batch_rng = np.random.default_rng(1)
    for _ in range(spec["warmup"]):
        trainer.train_step(data.random_batch(config.batch_size, batch_rng))
    start = time.perf_counter()
    for _ in range(spec["iterations"]):
        trainer.train_step(data.random_batch(config.batch_size, batch_rng))
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds_per_iteration": elapsed / spec["iterations"], "peak_mib": peak_kib / 1024}))


def run(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"child failed for {spec}:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append", help="run only these configurations")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "torch_home"))
    import tempfile

    print(f"DeePSiM training speed, CPU, {args.threads} threads, batch {args.batch_size}, "
          f"{args.iterations} timed iterations after {args.warmup} warm-up")
    print(f"{'config':<9} {'loss':<6} {'it/s':>8} {'s/it':>8} {'peak MiB':>9} {'full/image time':>16}")
    with tempfile.TemporaryDirectory() as out:
        for name in args.only or CONFIGS:
            times = {}
            for loss in ("image", "full"):
                spec = dict(CONFIGS[name], loss=loss, batch_size=args.batch_size, iterations=args.iterations,
                            warmup=args.warmup, threads=args.threads, out=out)
                r = run(spec)
                times[loss] = r["seconds_per_iteration"]
                ratio = f"{times['full'] / times['image']:.2f}x" if loss == "full" else ""
                print(f"{name:<9} {loss:<6} {1 / r['seconds_per_iteration']:>8.3f} {r['seconds_per_iteration']:>8.2f} "
                      f"{r['peak_mib']:>9.0f} {ratio:>16}", flush=True)


if __name__ == "__main__":
    main()
