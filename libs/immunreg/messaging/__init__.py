"""Kafka plumbing: the consumer loop, reactions, topics and partitioning."""

from immunreg.messaging.consumer import EventConsumer
from immunreg.messaging.reactions import Reactions
from immunreg.messaging.topics import ensure_topics, wait_for_kafka

__all__ = ["EventConsumer", "Reactions", "ensure_topics", "wait_for_kafka"]
