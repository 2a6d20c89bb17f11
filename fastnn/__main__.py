"""python -m fastnn demo | bench | info | lm"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build and runtime configuration")
    demo = sub.add_parser("demo", help="train an MLP on the bundled digits")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--distributed", action="store_true", help="run under mpirun")
    args, rest = parser.parse_known_args(argv)
    if args.command == "info":
        import fastnn
        fastnn.info()
    elif args.command == "demo":
        from fastnn.demo import main as demo_main
        return demo_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
