"""python -m fastnn demo | bench | info | lm"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build and runtime configuration")
    demo = sub.add_parser("demo", help="train an MLP on the bundled digits")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--distributed", action="store_true", help="run under mpirun")
    from fastnn import bench
    bench.add_arguments(sub.add_parser(
        "bench", help="training/inference throughput: fastnn vs NumPy vs PyTorch"))
    from fastnn.apps import lm_cli
    lm_cli.add_arguments(sub.add_parser(
        "lm", help="train a next-character language model and sample from it",
        description="Train a fixed-context next-token model (embeddings of the previous "
                    "--context tokens, an MLP, softmax) and generate text with it."))
    args = parser.parse_args(argv)  # an unknown option is an error (exit 2)
    if args.command == "lm":
        return lm_cli.main(args)
    if args.command == "bench":
        return bench.main(args)
    if args.command == "info":
        import fastnn
        fastnn.info()
    elif args.command == "demo":
        from fastnn.apps.demo import main as demo_main
        return demo_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
