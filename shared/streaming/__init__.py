"""Kafka plumbing shared by the publisher, the ingestion worker and the tests."""
