"""Run the ``safefed`` command in-process (fast) and capture its exit status and output."""

from __future__ import annotations

import sys


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from safefed.cli import main

    monkeypatch.setattr(sys, "argv", ["safefed", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
