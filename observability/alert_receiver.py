"""The local webhook receiver of `make up`'s Alertmanager: prints one line per alert of every notification.

    .venv/bin/python -m observability.alert_receiver [--port 5001]      # or: make alert-receiver

Alertmanager posts each notification as JSON to `<url>/<receiver>` (alertmanager/alertmanager.yml: `/pages`,
`/tickets`, `/notices`). `Receiver` also keeps them, in arrival order, for the tests. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_PORT = 5001  # alertmanager.yml's webhook URLs point here


@dataclass(frozen=True)
class Notification:
    """One webhook call: the receiver (the URL path's last part) and Alertmanager's JSON payload."""

    receiver: str
    payload: dict[str, Any]

    def lines(self) -> list[str]:
        """One line per alert: receiver, status, name, the other labels, summary and runbook."""
        lines = []
        for alert in self.payload.get("alerts", []):
            labels = dict(alert.get("labels", {}))
            name = labels.pop("alertname", "?")
            annotations = alert.get("annotations", {})
            shown = " ".join(f"{key}={value}" for key, value in sorted(labels.items()))
            lines.append(
                f"[{self.receiver}] {alert.get('status', '?').upper()} {name} {shown}: "
                f"{annotations.get('summary', '')} ({annotations.get('runbook_url', 'no runbook')})"
            )
        return lines


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POSTed notification (and prints it when `echo`)."""

    def __init__(self, port: int = 0, echo: bool = False) -> None:
        self._notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                notification = Notification(self.path.rstrip("/").rsplit("/", 1)[-1], json.loads(body))
                with receiver._lock:
                    receiver._notifications.append(notification)
                if echo:
                    print("\n".join(notification.lines()), flush=True)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet: the notifications are the output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Receiver:
        """Serve from a daemon thread."""
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def notifications(self) -> list[Notification]:
        """Every notification received so far, oldest first."""
        with self._lock:
            return list(self._notifications)

    def stop(self) -> None:
        """Stop serving (from another thread) and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    """Serve on 127.0.0.1 (--port), printing every notification, until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    port = parser.parse_args().port
    receiver = Receiver(port, echo=True)
    print(f"alert receiver: {receiver.url}/<receiver> (Ctrl-C stops)", flush=True)
    receiver.serve_forever()


if __name__ == "__main__":
    main()
