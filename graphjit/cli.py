"""The ``graphjit`` command line.

Subcommands today: ``version``, ``ops`` (every registered op with its kind and whether it
has a gradient rule and a scalar expression) and ``describe OP`` (where each rule of an op
is defined). The IR dump tool joins here as ``graphjit dump`` with the compiler.
"""
from __future__ import annotations

import argparse
import sys


def _cmd_version(args) -> int:
    import graphjit
    print(f"graphjit {graphjit.__version__}")
    return 0


def _cmd_ops(args) -> int:
    from graphjit.ops import all_ops
    ops = all_ops()
    width = max(len(n) for n in ops)
    print(f"{'op':<{width}}  {'kind':<11}  vjp  scalar")
    for name in sorted(ops):
        op = ops[name]
        print(f"{name:<{width}}  {op.kind:<11}  {'yes' if op.vjp else 'no ':<3}  "
              f"{'yes' if op.scalar else 'no'}")
    print(f"{len(ops)} ops")
    return 0


def _cmd_describe(args) -> int:
    from graphjit.ops import describe
    try:
        print(describe(args.op))
    except KeyError as e:
        print(f"graphjit describe: {e.args[0]}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="graphjit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version").set_defaults(fn=_cmd_version)
    sub.add_parser("ops", help="list the registered primitive ops").set_defaults(fn=_cmd_ops)
    d = sub.add_parser("describe", help="show where an op and its rules are defined")
    d.add_argument("op")
    d.set_defaults(fn=_cmd_describe)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
