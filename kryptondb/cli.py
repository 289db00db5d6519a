"""The ``kryptondb`` command."""

from __future__ import annotations

import argparse
import sys
import time

from kryptondb.errors import KryptonError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kryptondb",
        description="KryptonDB: fast incremental and approximate CNN re-inference.",
        epilog="Examples:\n  kryptondb demo\n  kryptondb predict photo.jpg --model efficientnet_lite0"
               "\n  kryptondb describe resnet18\n  kryptondb models",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="classify the bundled cat photo with real MobileNetV2 weights")
    _model_args(demo, default_model="mobilenet_v2")
    pred = sub.add_parser("predict", help="top-k ImageNet classes of one or more images")
    pred.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    _model_args(pred, default_model="mobilenet_v2")
    desc = sub.add_parser("describe", help="per-layer shapes, parameters and FLOPs of a model")
    desc.add_argument("model", help="zoo name or path to an .onnx file")
    sub.add_parser("models", help="list the model zoo and where each one's weights come from")
    return p


def _model_args(p, default_model: str) -> None:
    p.add_argument("--model", "-m", default=default_model,
                   help=f"zoo name or .onnx path (default: {default_model})")
    p.add_argument("--top", "-k", type=int, default=5, help="how many classes to show (default 5)")
    p.add_argument("--backend", "-b", default="onnxruntime", choices=["onnxruntime", "numpy"],
                   help="execution backend (default: onnxruntime)")


def _predict(model_name, images, k, backend) -> None:
    import kryptondb

    t = time.perf_counter()
    model = kryptondb.load_model(model_name)
    print(f"model: {model.name} [{model.weights}]")
    results = model.top(images, k=k, backend=backend)
    for path, preds in zip(images, results):
        print(f"\n{path}")
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p.label:<28} {p.probability:7.2%}  (class {p.class_id})")
    print(f"\n{len(images)} image(s) in {time.perf_counter() - t:.2f} s on {backend}")


def _models() -> None:
    from kryptondb.model.zoo import ZOO

    print(f"{'model':<20}{'input':<12}weights")
    for e in ZOO.values():
        size = f"{e.preprocess.crop}x{e.preprocess.crop}"
        where = f"ImageNet, from pip package {e.pip_name}" if e.has_real_weights \
            else "seeded random weights (not trained): for speed/exactness, not explanations"
        print(f"{e.name:<20}{size:<12}{where}")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in (None, "demo"):
            import kryptondb

            args = args if args.command else _parser().parse_args(["demo"])
            _predict(args.model, [kryptondb.bundled_image()], args.top, args.backend)
        elif args.command == "predict":
            _predict(args.model, args.images, args.top, args.backend)
        elif args.command == "describe":
            import kryptondb

            print(kryptondb.load_model(args.model).describe())
        elif args.command == "models":
            _models()
    except KryptonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
