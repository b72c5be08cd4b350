"""What kafka-python logs about our producers: secrets redacted, login failures noticed,
and its connection chatter demoted to DEBUG unless ``client_library_logs`` asks for it.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # see kafka_python.py
    from kafka import errors as kafka_errors

__all__ = ["CLIENT_ID", "LOGIN_FAILURES", "OURS", "REDACT", "filter_kafka_loggers"]

#: The client id of our producers: brokers see it, and it names kafka-python's threads for them.
CLIENT_ID = "sentinel-durable"


class RedactSecrets(logging.Filter):
    """kafka-python logs every request at DEBUG, SASL/PLAIN's SaslAuthenticate included, whose
    bytes carry the password in clear: replace any secret of ours in its log records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if secret:
            self.secrets.update({secret, repr(secret.encode())[2:-1]})  # as text, and as bytes' repr

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in sorted(self.secrets, key=len, reverse=True):
                    message = message.replace(secret, "**********")
                record.msg, record.args = message, None
        return True


class LoginFailures(logging.Filter):
    """kafka-python gives up bootstrapping with "Unable to bootstrap" alone; the refused SASL
    login that made it give up is only in its log records. Keep the latest, to name it."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: tuple[float, BaseException] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, kafka_errors.SaslAuthenticationFailedError):
                self.latest = (time.monotonic(), arg)
        return True

    def since(self, started: float) -> BaseException | None:
        latest = self.latest
        return latest[1] if latest is not None and latest[0] >= started else None


class OurConnections(logging.Filter):
    """Keep kafka-python's lines about our producers' connections out of the application's logs
    (it logs every failed reconnect at WARNING and ERROR: a flood in an outage, which our one
    WARNING already reports), unless the client was made with ``client_library_logs=True``.

    Ours are the records logged on our threads: the flusher's, and the threads kafka-python starts
    for a producer whose client id is ours (``kafka-io-sentinel-durable``...); they are demoted to
    DEBUG. The application's own kafka-python clients log as before: nothing is changed in the
    loggers' levels or handlers.
    """

    def __init__(self) -> None:
        super().__init__()
        self._thread = threading.local()  # .wanted: what the client the current thread works for chose
        self._wanted_lock = threading.Lock()
        self._wanted = 0  # transports alive with client_library_logs=True (for kafka-python's threads)

    def want(self, wanted: bool | None) -> None:
        """On the thread about to call kafka-python for a client: its choice applies to that thread."""
        self._thread.wanted = wanted

    def transport_started(self, wanted: bool) -> None:
        if wanted:
            with self._wanted_lock:
                self._wanted += 1

    def transport_closed(self, wanted: bool) -> None:
        if wanted:
            with self._wanted_lock:
                self._wanted -= 1

    def filter(self, record: logging.LogRecord) -> bool:
        wanted = getattr(self._thread, "wanted", None)
        if wanted is None:
            if CLIENT_ID not in (record.threadName or ""):
                return True  # not ours
            wanted = self._wanted > 0
        if wanted or record.levelno <= logging.DEBUG:
            return True
        # Ours, and not wanted: demoted to DEBUG, so it shows only where the application logs
        # kafka-python at DEBUG (as librdkafka's lines do, on the "librdkafka" logger).
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


REDACT = RedactSecrets()
LOGIN_FAILURES = LoginFailures()
OURS = OurConnections()


def filter_kafka_loggers() -> None:
    """Put our filters on every kafka-python logger (a logger's filters see only its own records),
    the login watcher before the one that may drop the record. Idempotent: new loggers get them too."""
    for name in [name for name in logging.root.manager.loggerDict if name == "kafka" or name.startswith("kafka.")]:
        kafka_logger = logging.getLogger(name)
        for log_filter in (REDACT, LOGIN_FAILURES, OURS) if name == "kafka.net.manager" else (REDACT, OURS):
            kafka_logger.addFilter(log_filter)  # addFilter does nothing for a filter already there


filter_kafka_loggers()
