"""python -m localaws [--port PORT] [--port-file FILE]

Starts the local AWS on 127.0.0.1 (a free port when PORT is 0), writes the port to FILE once it
accepts requests, and stops when its parent process ends, so a test run never leaves one behind.
"""

import argparse
import os
import signal
import sys
import threading
import time


def _die_with_parent(parent: int) -> None:
    # Polled rather than PR_SET_PDEATHSIG: that fires when the spawning *thread* ends, and a
    # test harness spawns from a test's thread.

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(prog="localaws")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()

    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    _die_with_parent(os.getppid())

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from . import patches
    from .app import LocalAws

    patches.apply()
    app = LocalAws(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_port
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"localaws listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
