"""Waiting room and WebRTC signalling, with no knowledge of the web framework.

``protocol`` parses and encodes the messages of ``docs/PROTOCOL.md`` (with ``messages``,
``wire`` and ``errors``); ``participants``, ``call`` and ``rooms`` hold the state machine and
the rules, answering commands with ``effects``; ``lobby`` adds the therapists' dashboard
sockets, which watch and run the waiting room without joining a call; ``events`` reports
each act for the audit trail; ``switchboard`` carries the effects out through a ``fanout``
to ``Connection`` objects; ``session`` runs one socket from ``hello`` to close.
"""
