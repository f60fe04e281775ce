"""Chaos soak: random faults for minutes, then check that the cluster settles whole and consistent.

A cluster of real processes with the default settings (nothing shortened): a redis-server WITH
persistence (appendonly yes, appendfsync everysec, in the temp dir), the API, TWO schedulers (one
leads), three node agents (node-1 127.0.0.2, node-2 127.0.0.3, node-3 127.0.0.4 on this machine's
engine; with `--hosts`, each inside a host of a bed of three, cli/hostbed.py, against that host's
own engine), and three services: `web` 6 × httpd (always, a published port), `worker` 4 ×
`sleep 3600` (always), `batch` 2 × `sleep 3600` (on-failure).

For `--duration` seconds, every 3-8 s (seeded RNG), one fault of the kinds chosen with `--faults`, in
rounds that make each kind once in a random order:
- agent: SIGKILL a node agent's process group, start it again after 0-10 s;
- leader: SIGKILL the scheduler holding the `gorchester:<cluster>:leader` lease, start it again;
- container: `docker rm -f` a random running replica container of the cluster;
- redis: SIGKILL redis-server, start it again on the same port and dir after 0-3 s;
- writes: a user's change through the API (scale a service, create or delete the service `extra`),
  whose acknowledged outcome is kept in a ledger and checked at the end;
- hostile: requests an attacker or a careless client would send (issue 11's findings): each must be
  refused (4xx, or 503 while Redis is down), never accepted, never a 5xx, and answered within 2 s.
- engine (a bed only): SIGKILL a host's dockerd (its agent and containers live on), start it again
  after 1-15 s (within the heartbeat window, or well beyond it);
- partition (a bed only): cut a host's cable for 5-30 s (its agent and containers live on, out of reach);
- failover (`--replicated` only: Redis as a master, two replicas and three sentinels): SIGKILL the
  master, start it again after 5-15 s, when a replica has been promoted (it rejoins as a replica).
  With `--replicated` the redis fault kills the master too, and starts it again after 0-3 s.

A bed is made when `--hosts` is given or engine or partition faults are chosen, a replicated Redis
when `--replicated` is given or failover faults are chosen; the default faults are the first six
above, with engine and partition on a bed and failover on a replicated Redis. At most one fault is
under way per node (agent, engine or partition): an agent started again inside a cut-off host could
not reach Redis to start.

A fault that finds its target gone (a container removed meanwhile, a process already dead) is a
fault not made: the injector picks another target or skips, logs it and goes on. An exception in
the injector itself is the soak's own error, reported apart from the cluster's.

Then every process is up again and the soak waits (up to `--settle` s) until every service reports
running == desired, and checks the invariants until they all hold or the settle time is out (see
bench/chaos/checks.py).

    .venv/bin/python -m bench.chaos --duration 600 --runs 5 --write [--seed N] [--faults ...] [--hosts]
        [--replicated] [--keep-logs]
"""
