"""Start and stop the local PostgreSQL and Kafka that `make run` and `make test` use.

Both are real servers bound to 127.0.0.1 with their data under the ignored
state folder. When the environment names a reachable server, it is used and
nothing is started.
"""

from immunreg.localinfra.kafka import LocalKafka
from immunreg.localinfra.postgres import LocalPostgres
from immunreg.localinfra.stack import down, status, up

__all__ = ["LocalKafka", "LocalPostgres", "down", "status", "up"]
