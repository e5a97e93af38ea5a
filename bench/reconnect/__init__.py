"""Benchmark: how fast a running call gets its signalling back after a dropped websocket
and after a server restart, and whether its media notices (``python -m bench.reconnect``).

Self-contained: the app runs as ``alcove serve`` in a process of its own, and everything the
benchmark needs (records, sessions, sockets, peers) is written here, not borrowed from the
tests, so the benchmark keeps working whatever the test helpers become.
"""
