"""Time Cream's networks: evaluation, retraining steps, supernet paths and search steps. Prints
one JSON line.

    python tools/benchmark.py --selection 287 --mode infer                 # dygraph forward
    python tools/benchmark.py --selection 287 --mode infer --backend paddle_inference
    python tools/benchmark.py --selection 604 --mode train --batch-size 32 --threads 2
    python tools/benchmark.py --supernet --mode train --path "[[0],[3],[3],[3],[3],[3],[0]]"
    python tools/benchmark.py --mode search                  # one search step, board and KD
    python tools/benchmark.py --mode search --meta           # ... with the meta-matching update
    python tools/benchmark.py --selection 14 --mode train --data data/demo   # with the real loader
    python tools/benchmark.py --mode loader --data DIR --transforms retrain --workers 2   # the loader

Fields: model, mode, meta, backend, arch (search: the timed steps' sampled paths), batch_size,
image_size, threads, data, warmup, steps, images_per_s, ms_per_step (mean; also _median, _best),
step_ms, peak_rss_mb, mflops (thop multiply-adds of one image; search: mean of the sampled
paths), gflops_per_s (mflops x 1 for infer or x 3 for train/search, x images/s), and the machine
(cpu, cpu_cores, device, gpu, paddle, python). The loader mode has no network (model "loader",
mflops and gflops_per_s null) and adds transforms, workers, worker_peak_rss_mb (the largest
worker's), worker_cpu_ms_per_image and main_cpu_ms_per_image (CPU time of all workers, and of
this process, per image over the timed steps) and stage_cpu_ms_per_image (CPU time of each stage
of the pipeline, in this process);
the search mode adds board (the paths on the prioritized board the steps used); on a GPU,
peak_gpu_memory_mb (Paddle's allocator high-water mark) and amp are added.

    python tools/benchmark.py --device gpu --selection 287 --mode train --amp O1
    python tools/benchmark.py --device gpu --selection 287 --mode infer --backend paddle_inference --tensorrt
docs/BENCHMARKS.md has the measured table.
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import json
import sys


def parse_args(argv=None) -> argparse.Namespace:
    from lib.engine.benchmark import BACKENDS, DEFAULT_LOADER_SELECTION, LOADER_TRANSFORMS, MODES
    from pimm.utils.amp import AMP_LEVELS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    net = parser.add_mutually_exclusive_group()
    net.add_argument("--selection", type=int,
                     help="released net: 14, 43, 114, 287, 481 or 604 (loader: whose recipe and "
                          f"size; default {DEFAULT_LOADER_SELECTION})")
    net.add_argument("--arch", type=_entry.arch_list,
                     help="arch list of a searched child net (224 px by default)")
    net.add_argument("--supernet", action="store_true", help="the supernet of --flops-range")
    parser.add_argument("--flops-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="supernet FLOPs range in MFLOPs (default 0 600; search: the "
                             "config's)")
    parser.add_argument("--path", type=_entry.arch_list,
                        help="supernet path for infer/train (default: a fixed random one)")
    parser.add_argument("--mode", choices=MODES, default="infer")
    parser.add_argument("--meta", action="store_true",
                        help="search: take the meta-matching update in every timed step")
    parser.add_argument("--config", help="--supernet and --mode search: the search config whose "
                                         "supernet and settings are timed (default: "
                                         "experiments/configs/train/train.yaml)")
    parser.add_argument("--backend", choices=BACKENDS, default="dygraph",
                        help="infer with dygraph or with the exported model in Paddle Inference")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int,
                        help="default: the net's published size (supernet: its space's; search: "
                             "the config's DATASET.IMAGE_SIZE)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--threads", type=int, help="CPU threads (default: all available cores)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--data",
                        help="time the real loader too: a folder with train/ and val/ class "
                             "folders")
    parser.add_argument("--workers", type=int, default=2,
                        help="loader processes with --data (default 2; loader mode: --warmup must "
                             "be at least this)")
    parser.add_argument("--transforms", choices=LOADER_TRANSFORMS, default="retrain",
                        help="loader mode: a child's retraining or evaluation pipeline, or the "
                             "search's (default retrain)")
    parser.add_argument("--no-ema", action="store_true", help="train without the EMA update")
    parser.add_argument("--override", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a config key for this run, e.g. --override SUPERNET.PICK_METHOD top1 "
                             "(repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "gpu"),
                        help="default: gpu when Paddle sees one")
    parser.add_argument("--amp", choices=AMP_LEVELS, default="O0",
                        help="GPU: mixed precision of train/search steps and dygraph inference "
                             "(the config's AMP key; AMP_DTYPE through --override), fp16 for "
                             "--backend paddle_inference (default O0: float32)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="GPU, --backend paddle_inference: run the program paddle.tensorrt "
                             "converts")
    return parser.parse_args(argv)


@_entry.entry_point(ValueError, FileNotFoundError)
def main(argv=None) -> int:
    args = parse_args(argv)
    import paddle

    from lib.engine.benchmark import BenchmarkOptions, run_benchmark

    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if args.device == "gpu" and not has_gpu:
        raise ValueError("--device gpu needs a CUDA build of Paddle and a visible GPU")
    if args.device:
        paddle.set_device(args.device)
    opts = BenchmarkOptions(
        mode=args.mode, selection=args.selection, arch=args.arch, supernet=args.supernet,
        flops_range=tuple(args.flops_range) if args.flops_range else None, path=args.path,
        batch_size=args.batch_size, image_size=args.image_size, num_classes=args.num_classes,
        threads=args.threads, warmup=args.warmup, steps=args.steps, backend=args.backend,
        data_dir=args.data, workers=args.workers, ema=not args.no_ema, meta=args.meta,
        config=args.config, seed=args.seed, transforms=args.transforms,
        overrides=tuple(part for pair in args.override for part in pair), amp=args.amp,
        tensorrt=args.tensorrt)
    print(json.dumps(run_benchmark(opts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
