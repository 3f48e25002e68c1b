"""The ``graphjit`` command line.

Subcommands: ``version``, ``ops`` (every registered op with its kind and whether it has a
gradient rule and a scalar expression), ``describe OP`` (where each rule of an op is
defined), ``dump SCRIPT.py`` (the IR dump tool, graphjit/dump.py), ``run SCRIPT.py``
(a PyTorch script with graphjit as ``torch``, graphjit/run.py), ``cache info|clear``
(the on-disk compile cache) and ``fuzz`` (the differential fuzzer, graphjit/fuzz/).
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
    # The op's rules (graphjit.ops, which may not import the backends), then its kernels.
    from graphjit.backend import describe_kernels
    from graphjit.ops import describe
    try:
        print(describe(args.op))
    except KeyError as e:
        print(f"graphjit describe: {e.args[0]}", file=sys.stderr)
        return 2
    print(describe_kernels(args.op))
    return 0


DUMP_USAGE = ("graphjit dump SCRIPT.py [script args] [--out DIR] [--stages S,...] "
              "[--format text,dot,svg,json] [--report] [--profile]")


def _dump_args(argv):
    """Split ``dump``'s own options from the script's arguments (anything after ``--`` is
    the script's too, for a script with options of the same names)."""
    opts = {"out": "graphjit-dump", "stages": None, "formats": list(FORMATS_DEFAULT),
            "report": False, "profile": False}
    script, script_args, i = None, [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            script_args += argv[i + 1:]
            break
        if a in ("--out", "--stages", "--format"):
            if i + 1 >= len(argv):
                raise SystemExit(f"graphjit dump: {a} needs a value ({DUMP_USAGE})")
            value = argv[i + 1]
            if a == "--out":
                opts["out"] = value
            elif a == "--stages":
                opts["stages"] = [v for v in value.split(",") if v]
            else:
                opts["formats"] = [v for v in value.split(",") if v]
            i += 2
            continue
        if a in ("--report", "--profile"):
            opts[a[2:]] = True
        elif script is None:
            script = a
        else:
            script_args.append(a)
        i += 1
    return script, script_args, opts


FORMATS_DEFAULT = ("text", "dot", "svg", "json")


def _fail(message: str) -> int:
    print(f"graphjit dump: {message}", file=sys.stderr)
    return 2


def _cmd_dump(argv) -> int:
    import os
    import runpy

    from graphjit import dump
    try:
        script, script_args, opts = _dump_args(argv)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    if script is None:
        return _fail(f"no script given; usage: {DUMP_USAGE}")
    if not os.path.isfile(script):
        return _fail(f"no such script: {script}")
    known = dump.stage_names()
    for stage in opts["stages"] or ():
        if stage not in known:
            return _fail(f"unknown stage {stage!r}; stages are {', '.join(known)}")
    for fmt in opts["formats"]:
        if fmt not in dump.FORMATS:
            return _fail(f"unknown format {fmt!r}; formats are {', '.join(dump.FORMATS)}")
    out = opts["out"]
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".graphjit-write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        return _fail(f"cannot write to {out}: {e.strerror or e}")
    cfg = dump.configure(out, opts["stages"], opts["formats"], opts["profile"])
    saved_argv = sys.argv
    sys.argv = [script] + script_args
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            print(f"graphjit dump: the script exited with status {e.code}", file=sys.stderr)
    finally:
        sys.argv = saved_argv
    for note in cfg.notes:
        print(f"graphjit dump: note: {note}", file=sys.stderr)
    if not cfg.written:
        print(f"graphjit dump: {script} compiled no function (nothing under @graphjit.compile "
              "ran), so nothing was written", file=sys.stderr)
        return 1
    print(f"graphjit dump: wrote {len(cfg.written)} folder(s) under {out}:", file=sys.stderr)
    for folder in cfg.written:
        print(f"  {folder}", file=sys.stderr)
        if opts["report"]:
            with open(os.path.join(folder, "report.txt"), encoding="utf-8") as f:
                print(f.read())
    return 0


def _cmd_cache(args) -> int:
    import os
    import shutil

    from graphjit.backend.cache import cache_dir, numba_cache_folder
    root = cache_dir()
    # Numba's files of the generated modules: in __pycache__ next to them, so under root,
    # unless NUMBA_CACHE_DIR puts them elsewhere ([Generated modules on disk]).
    outside = []
    for entry in sorted(os.listdir(root)):
        folder = os.path.join(root, entry)
        if os.path.isdir(folder) and entry != "__pycache__":
            numba_folder = numba_cache_folder(folder)
            if not os.path.abspath(numba_folder).startswith(os.path.abspath(root) + os.sep) \
                    and os.path.isdir(numba_folder):
                outside.append(numba_folder)
    files = []
    for top in [root] + outside:
        for folder, _, names in os.walk(top):
            files += [os.path.join(folder, n) for n in names]
    if args.action == "info":
        size = sum(os.path.getsize(f) for f in files if os.path.exists(f))
        modules = [f for f in files if f.endswith(".py")]

        def under(sub):  # bundles, lowered programs, the runtime: pickles in folders of
            return [f for f in files if f.startswith(os.path.join(root, sub) + os.sep)
                    and f.endswith(".pickle")]  # their own
        bundles, lowered, runtime = under("bundles"), under("lowered"), under("runtime")
        codes = [f for f in files if f.endswith(".pycode")]  # the modules' compiled code
        numba_files = (len(files) - len(modules) - len(codes) - len(bundles) - len(lowered)
                       - len(runtime))
        print(f"graphjit compile cache: {root}")
        for folder in outside:
            print(f"  Numba's cache files (NUMBA_CACHE_DIR): {folder}")
        print(f"  {len(modules)} generated modules, {numba_files} Numba cache files, "
              f"{len(bundles)} bundles (kernels, drivers), {len(runtime)} runtime, "
              f"{len(lowered)} lowered programs, "
              f"{size / 2**20:.1f} MiB (set GRAPHJIT_CACHE_DIR to move it)")
        return 0
    for path in [os.path.join(root, entry) for entry in os.listdir(root)] + outside:
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    print(f"graphjit compile cache: removed {len(files)} files from {root}"
          + "".join(f" and {folder}" for folder in outside))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "dump":
        # The script's own arguments may look like anything: parsed by hand (_dump_args).
        return _cmd_dump(argv[1:])
    if argv and argv[0] == "run":
        # graphjit/run.py: the script and its own arguments follow, untouched.
        from graphjit.run import main as run_main
        return run_main(argv[1:])
    if argv and argv[0] == "fuzz":
        from graphjit.fuzz import main as fuzz_main  # its own options and --help
        return fuzz_main(argv[1:])
    parser = argparse.ArgumentParser(prog="graphjit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version").set_defaults(fn=_cmd_version)
    sub.add_parser("ops", help="list the registered primitive ops").set_defaults(fn=_cmd_ops)
    d = sub.add_parser("describe", help="show where an op and its rules are defined")
    d.add_argument("op")
    d.set_defaults(fn=_cmd_describe)
    sub.add_parser("dump", help="run a script and write every compiled program's IR stages, "
                                f"kernels, graph drawings and report: {DUMP_USAGE}")
    sub.add_parser("fuzz", help="differential fuzzer: random programs run eagerly and compiled, "
                                "compared, mismatches shrunk to scripts (graphjit fuzz --help)")
    sub.add_parser("run", help="run a PyTorch script with graphjit standing in for torch "
                               "(import torch gives graphjit): graphjit run SCRIPT.py [args]")
    c = sub.add_parser("cache", help="the on-disk compile cache")
    c.add_argument("action", choices=["info", "clear"])
    c.set_defaults(fn=_cmd_cache)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
