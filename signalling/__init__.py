"""Waiting room and WebRTC signalling, with no knowledge of the web framework.

``protocol`` parses and encodes the messages of ``docs/PROTOCOL.md`` (with ``messages``,
``wire`` and ``errors``); ``participants`` and ``rooms`` hold the state machine and the
rules, answering commands with ``effects``; ``switchboard`` carries the effects out through
a ``fanout`` to ``Connection`` objects; ``session`` runs one socket from ``hello`` to close.
"""
