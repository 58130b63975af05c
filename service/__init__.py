"""The query service: retrieval, reading, answering, and the CLI and HTTP front ends."""
