"""``python -m funcnet.port model.py [-o out.py]``: convert a PyTorch model file to funcnet.

The converted code goes to ``-o`` (or stdout); what could not be converted goes to stderr as
``file:line: message`` (and as ``# funcnet.port:`` comments in the code). Exit status: 0 when
converted (flags or not), 1 on a syntax error or an unreadable file."""

from __future__ import annotations

import argparse
import sys

from funcnet.port import convert
from funcnet.port._convert import PortSyntaxError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m funcnet.port", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a Python file written for PyTorch")
    parser.add_argument("-o", "--output", help="where to write the funcnet version (default: stdout)")
    args = parser.parse_args(argv)
    try:
        with open(args.source, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"{args.source}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        code = convert(text, filename=args.source)
    except PortSyntaxError as e:
        print(str(e), file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(code)
    else:
        sys.stdout.write(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
