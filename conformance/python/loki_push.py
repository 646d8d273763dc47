"""Push log lines to framelake's Loki push API with python-logging-loki (JSON).

Usage:
    python loki_push.py --url BASE --out FILE [--org-id TENANT]

Logs three lines at three levels through `logging_loki.LokiHandler`
(version "1": JSON pushes), each with an extra `step` tag, and writes to FILE
what was logged: the lines in order with the labels the handler gives them.
Exits 1 when any push failed (the handler reports a failure through
`handleError`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import logging_loki

LINES = [
    (logging.INFO, "first line"),
    (logging.WARNING, "disk almost full"),
    (logging.ERROR, "payment failed"),
]


class Handler(logging_loki.LokiHandler):
    """Keeps the failures instead of printing them."""

    failures: list[str] = []

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self.failures.append(f"{record.getMessage()!r}: {sys.exc_info()[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:4318")
    parser.add_argument("--out", required=True)
    parser.add_argument("--org-id", default=None, help="X-Scope-OrgID of the pushes")
    args = parser.parse_args()

    handler = Handler(url=f"{args.url}/loki/api/v1/push", tags={"application": "py-loki"}, version="1")
    if args.org_id:
        handler.emitter.session.headers["X-Scope-OrgID"] = args.org_id
    logger = logging.getLogger("conformance")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    sent = []
    for step, (level, line) in enumerate(LINES):
        logger.log(level, line, extra={"tags": {"step": str(step)}})
        sent.append(
            {
                "line": line,
                "labels": {
                    "application": "py-loki",
                    "severity": logging.getLevelName(level).lower(),
                    "logger": "conformance",
                    "step": str(step),
                },
            }
        )
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"lines": sent}, f, indent=2)
        f.write("\n")
    if handler.failures:
        print("push failed:", *handler.failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
