"""A local Apache Kafka broker in KRaft mode, from the official jars on Maven Central.

`deploy/kafka/pom.xml` names the broker version; Maven copies its jars into the
state folder, and the broker runs as one combined broker+controller node with
the machine's Java 17, heap capped, bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from immunreg.localinfra._proc import (
    apt_install,
    log,
    pid_alive,
    port_open,
    read_pid,
    run,
    stop_pid,
    wait_for_port,
)
from immunreg.messaging.topics import cluster_id
from immunreg.paths import REPO_ROOT

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
# Ctrl-C must stop the whole stack within 15 s: the broker gets at most this much of it.
STOP_SECONDS = 5.0

SERVER_PROPERTIES = """\
# Written by immunreg.localinfra.kafka; edits are overwritten on start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={protocol}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={protocol}://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name={protocol}
listener.security.protocol.map=CONTROLLER:{protocol},{protocol}:{protocol}
log.dirs={data_dir}
num.partitions=3
auto.create.topics.enable=false
# One node: internal topics cannot have more than one replica, and fewer
# partitions make the first start quicker on a two-core machine.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Event topics are the system of record for projections: keep them forever.
log.retention.hours=-1
log.retention.bytes=-1
{extra}
"""

LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {logfile}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = info
"""


def pom_digest() -> str:
    """A hash of the pom, so changed versions fetch the jars again."""
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


@dataclass
class LocalKafka:
    """Kafka in `<state>/kafka`, listening on 127.0.0.1 only."""

    root: Path
    port: int = 59092
    controller_port: int = 59093
    heap: str = "512m"
    # Both listeners' security protocol, and properties added to the file: a broker that
    # authenticates and authorises (tests/integration/messaging/test_kafka_acls.py).
    protocol: str = "PLAINTEXT"
    extra_properties: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    def ensure_java(self) -> str:
        """The java binary, installing Debian's JRE 17 when none is present."""
        java = shutil.which("java")
        if java is None:
            apt_install("openjdk-17-jre-headless")
            java = shutil.which("java")
        if java is None:
            raise RuntimeError("java is still missing after installing openjdk-17-jre-headless")
        return java

    def ensure_jars(self) -> None:
        """Let Maven copy the broker's jars from Maven Central, once per pom version."""
        stamp = self.libs / ".pom-digest"
        if stamp.exists() and stamp.read_text() == pom_digest():
            return
        if shutil.which("mvn") is None:
            apt_install("maven")
        log("fetching Kafka jars from Maven Central (first run only)")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        self.libs.mkdir(parents=True)
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ]
        )
        stamp.write_text(pom_digest())

    def _java(self, java: str, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-Djava.awt.headless=true",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def start(self) -> str:
        """Fetch jars, format storage (first time), start the broker; return bootstrap."""
        if port_open("127.0.0.1", self.port):
            self.check_ours()
            log(f"Kafka already listening on {self.bootstrap} (this checkout's)")
            return self.bootstrap
        java = self.ensure_java()
        self.ensure_jars()
        self.root.mkdir(parents=True, exist_ok=True)
        properties = self.root / "server.properties"
        properties.write_text(
            SERVER_PROPERTIES.format(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data_dir,
                protocol=self.protocol,
                extra=self.extra_properties,
            )
        )
        (self.root / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(logfile=self.logfile))
        if not (self.data_dir / "meta.properties").exists():
            log(f"formatting KRaft storage in {self.data_dir}")
            cluster_id = run(self._java(java, "kafka.tools.StorageTool", "random-uuid"))
            run(
                self._java(
                    java,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id.stdout.strip().splitlines()[-1],
                    "-c",
                    str(properties),
                )
            )
        log(f"starting Kafka on {self.bootstrap}")
        console = (self.root / "console.log").open("ab")
        process = subprocess.Popen(
            [
                *self._java(java, "kafka.Kafka", str(properties), heap=self.heap)[:1],
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                *self._java(java, "kafka.Kafka", str(properties), heap=self.heap)[1:],
            ],
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(str(process.pid))
        wait_for_port("127.0.0.1", self.port, 90, "Kafka", self.logfile)
        return self.bootstrap

    def cluster_id_on_disk(self) -> str | None:
        """The cluster id this folder's storage was formatted with (None before the first start)."""
        meta = self.data_dir / "meta.properties"
        if not meta.exists():
            return None
        for line in meta.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None

    def check_ours(self) -> None:
        """Raise, saying what to do, unless the broker on the port runs on this folder's storage."""
        ours = self.cluster_id_on_disk()
        theirs = asyncio.run(cluster_id(self.bootstrap))
        if ours is not None and theirs == ours:
            return
        what = f"a Kafka cluster {theirs}" if theirs else "a program that does not answer as Kafka"
        raise RuntimeError(
            f"port {self.port} is taken by {what}, not by this checkout's broker "
            f"({self.data_dir}). Stop it (`make stop` in the checkout it belongs to), or run "
            "this checkout on other ports (IMMUNREG_PORT_OFFSET=100, or IMMUNREG_KAFKA_PORT), "
            "or name the cluster to use with KAFKA_BOOTSTRAP_SERVERS."
        )

    def running(self) -> bool:
        """Whether the broker this folder started is still alive."""
        pid = read_pid(self.pid_file)
        return bool(pid) and pid_alive(pid)

    def stop(self) -> None:
        """Stop the broker this folder started (a controlled shutdown, bounded).

        A lone KRaft node shuts down in a few seconds; if it has not after
        STOP_SECONDS it is killed, which it recovers from by replaying its logs.
        """
        stop_pid(self.pid_file, "Kafka", seconds=STOP_SECONDS)
