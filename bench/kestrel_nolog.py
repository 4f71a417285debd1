"""Start Kestrel with its request log switched off, for the logging-on-versus-off comparison.

Kestrel has no setting for this yet, so this stand-in drops each row where the proxy hands it to
the log writer (`LogWriter.submit`), before it is queued; everything else runs as in
`python -m kestrel`. The access log is separate (LOG_LEVEL). Replace this file with the real
switch once Kestrel has one (proposed: `REQUEST_LOG=off`, making `App` pass a no-op sink to
`Forwarder` and skip starting the writer).
"""

from kestrel.cli import main
from kestrel.domain import RequestLog
from kestrel.store.log_writer import LogWriter


def _drop(self: LogWriter, row: RequestLog) -> None:
    return None


LogWriter.submit = _drop  # type: ignore[method-assign]

raise SystemExit(main())
