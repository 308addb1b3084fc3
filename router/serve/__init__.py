"""Running processes: the server, the ``--workers`` supervisor, and spool adoption."""
