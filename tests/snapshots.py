"""Snapshot tests: exact text (IR, generated code) compared with a file under tests/snapshots/.

    from snapshots import assert_matches_snapshot
    assert_matches_snapshot("partition/one_output", print_graph(g))

compares the text with ``tests/snapshots/partition/one_output.txt`` and fails with a diff
when they differ. After a change that is meant to alter the text, run the tests with
``--update-snapshots`` (``python -m pytest tests/passes --update-snapshots``): the files are
rewritten, and ``git diff tests/snapshots`` shows what changed, for review and commit. A
snapshot with no file fails unless that flag is given, so a new test writes its own file
the first time it runs with the flag.
"""
from __future__ import annotations

import difflib
from pathlib import Path

SNAPSHOT_DIR = Path(__file__).parent / "snapshots"

# Set by tests/conftest.py from the --update-snapshots option.
update = False


def assert_matches_snapshot(name: str, text: str) -> None:
    """Check ``text`` against the snapshot ``name`` (a path under tests/snapshots/, without
    the ``.txt``), or with ``--update-snapshots`` write it there."""
    __tracebackhide__ = True  # pytest: the failure shows the test's line, not this one's
    path = SNAPSHOT_DIR / f"{name}.txt"
    shown = f"tests/snapshots/{name}.txt"
    text = text.rstrip("\n") + "\n"
    if update:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        raise AssertionError(f"no snapshot {shown}: run the test "
                             f"with --update-snapshots to write it. The text is:\n{text}")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            f"snapshot {name}", "now"))
        raise AssertionError(f"the text differs from snapshot {shown} "
                             "(if the change is intended, run with --update-snapshots and review "
                             f"git diff tests/snapshots):\n{diff}")
