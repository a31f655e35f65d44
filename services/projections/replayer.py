"""A rebuild's helper process: more consumers of the new model's group.

`rebuild(processes=n)` starts n - 1 of these (`python -m services.projections.replayer
DSN BOOTSTRAP SCHEMA PREFIX MEMBERS BATCH_SIZE`). Kafka shares the topics' partitions
among every member of the group, in this process and the others, and each batch
commits its effect with its position, so which process applied a batch makes no
difference to the model. A replay's Python runs on one core per process; the rebuild
is bound by it.

The helper is a child process with a lifeline (immunreg.childprocess): it runs until
its stdin reaches its end (or SIGTERM arrives). The rebuild closes it once every
position is caught up, and the operating system closes it when the rebuild's process
ends in any way, so a helper never outlives its rebuild nor writes into a model after
the rebuild summed its staged counters or dropped it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from immunreg.childprocess import run_child

from .handlers import Sources
from .rebuild import serve_helper


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    dsn, bootstrap, schema, prefix, members, batch_size = args
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_child(
        serve_helper(
            dsn,
            bootstrap,
            schema,
            Sources.prefixed(prefix),
            members=int(members),
            batch_size=int(batch_size),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
