"""Benchmark: the signalling relay, against the reference PeerJS server, and the Redis hop.

    python -m bench.fanout [--pairs 100] [--seconds 10] [--idle 2000]

See ``bench.fanout.__main__`` for what is measured and how.
"""
