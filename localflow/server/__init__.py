"""``localflow serve``: the long-lived process of a workspace, and the commands that talk to it.

- :mod:`.record`: the server's record and lock in ``<workspace>/server/`` (one server per
  workspace; ``status``; ``serve --stop``);
- :mod:`.serve`: :class:`~.serve.Server`, which picks up runnable objects nobody live owns and runs
  them (claimed with a resourceVersion-checked ``localflow.dev/manager`` annotation);
- :mod:`.worker`: the process that runs one claimed object with the existing runners;
- :mod:`.submit`: creating the object a run would create, for the server to run (``run --detach``,
  ``apply -f`` of a runnable kind), and starting a server in the background;
- :mod:`.follow`: ``get -w``, ``wait``, and ``run`` following a server-run object.

Layering: this package sits beside the CLI, above :mod:`localflow.api` (it imports the API, the
store and the runners; nothing below imports it).
"""
from .record import ServerRunning, server_status, stop_server
from .serve import Server
from .submit import ensure_server, submit

__all__ = ["Server", "ServerRunning", "server_status", "stop_server", "ensure_server", "submit"]
