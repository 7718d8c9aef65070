"""`vintner`: the command-line client of a Vintner server, through its REST API and websockets.

A pure client: it never imports Django or the server's code, so it installs on any machine with
the pinned requirements (requests, tuspy, websockets, rich).
"""

__version__ = "0.1.0"
