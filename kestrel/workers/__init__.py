"""More than one serving process (`WORKERS`): the supervisor that starts and replaces them
(`supervisor.py`), what it hands each one (`handoff.py`), and how a worker reads its siblings'
counters for one whole `/metrics` (`siblings.py`)."""
