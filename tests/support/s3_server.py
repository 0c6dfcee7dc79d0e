"""The moto S3 server as its own process on 127.0.0.1, answering one request at a time.

Serving requests one by one makes each conditional write (If-None-Match / If-Match) atomic, as it is on
AWS S3 and MinIO; moto's threaded server checks the condition and writes in two steps. Prints
`port N` once it listens.
"""

from __future__ import annotations

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
    sys.stdout.write(f"port {server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
