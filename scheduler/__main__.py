"""`python -m scheduler [--config config.yaml]`: apply the config if given, then reconcile forever."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import redis

from scheduler.loop import Scheduler
from shared import process_logs
from shared.config import ConfigError, ConfigSyntaxError, load_config
from shared.redis_access import check_access
from shared.settings import Settings

log = logging.getLogger("gorchester.scheduler")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler", description=__doc__)
    parser.add_argument("--config", "-f", type=Path, help="apply this config.yaml before scheduling")
    args = parser.parse_args(argv)
    process_logs.configure("scheduler")
    settings = Settings.from_env()
    check_access(settings.redis_url, settings.cluster, "scheduler")
    scheduler = Scheduler(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    if args.config is not None:
        try:
            config = load_config(args.config.read_text())
        except OSError as exc:
            print(f"{args.config}: {exc.strerror}", file=sys.stderr)
            return 2
        except ConfigSyntaxError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 2
        except ConfigError as exc:
            print("\n".join(exc.errors), file=sys.stderr)
            return 1
        while not stop.is_set():
            try:
                applied = scheduler.store.apply(config, time.time())
                outcome = {str(k): str(v) for k, v in applied.outcome.items()}
                log.info("applied %s", args.config, extra=process_logs.fields(services=outcome))
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable (%s); retrying", exc)
                stop.wait(1.0)
    scheduler.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
