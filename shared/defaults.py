"""Every tunable default in one place, named, so tests and operators can find and override them."""

# Configuration format (the seed README's tables).
DEFAULT_ENV = "local"
DEFAULT_LISTEN_ADDR = ":8080"
DEFAULT_DATA_DIR = "./orchestrator-data"
DEFAULT_CLUSTER_NAME = "default-cluster"
MIN_CPU_MILLICORES = 5
MAX_CPU_MILLICORES = 1_000_000  # 1,000 cores
MIN_MEMORY_BYTES = 16 * 1024 * 1024
MAX_MEMORY_BYTES = 2**40  # 1 TiB
MAX_REPLICAS = 10_000
DEFAULT_UPDATE_PARALLELISM = 1  # replicas a rolling update replaces at once
MAX_UPDATE_SECONDS = 3600  # a rolling update's delay between batches, and its monitor
MIN_TARGET_CPU = 5.0
MIN_TARGET_MEMORY = 10.0
DEFAULT_TARGET_CPU = 80.0  # used when a scale_policy names no target, as `kubectl autoscale` does
MIN_COOLDOWN_SECONDS = 30
MAX_COOLDOWN_SECONDS = 86_400  # a day
DEFAULT_COOLDOWN_SECONDS = 30
DEFAULT_HEALTH_INTERVAL = 10
DEFAULT_HEALTH_TIMEOUT = 5
DEFAULT_HEALTH_RETRIES = 3
MAX_HEALTH_SECONDS = 86_400  # a health check's interval and timeout: a day
MAX_HEALTH_RETRIES = 100

# Process settings (overridable through GORCHESTER_* environment variables, see shared/settings.py).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# A lost host is down 2-3 s after it stops (its replicas then start elsewhere, ~2 s): within 6 s. A beat
# is two Redis round trips and an engine ping, so 1,000 nodes make 2,000 Redis calls a second.
DEFAULT_HEARTBEAT_INTERVAL = 1.0  # seconds between node heartbeats
DEFAULT_HEARTBEAT_MISSES = 3  # missed beats before a node is down
DEFAULT_RECONCILE_INTERVAL = 10.0  # safety-net reconcile when nothing was notified
DEFAULT_ASSIGNED_TIMEOUT = 30.0  # an assigned task whose job left no trace is enqueued again after this
# Seconds a replica of a rolling update may take to start (an image pull), before its checks and monitor;
# and how long an update may place nothing before it fails.
DEFAULT_UPDATE_DEADLINE = 60.0
DEFAULT_RESTART_BACKOFF_BASE = 1.0
DEFAULT_RESTART_BACKOFF_MAX = 60.0
DEFAULT_RESTART_RESET_AFTER = 60.0  # a replica that ran this long cleanly starts its back-off afresh
DEFAULT_LEADER_LEASE = 3.0  # seconds; a dead leader is replaced within about this long
DEFAULT_JOB_TIMEOUT = 300  # seconds an RQ job may run (an image pull can be slow)
DEFAULT_EVENTS_MAXLEN = 10_000
DEFAULT_REDIS_TIMEOUT = 2.0  # socket timeout: a dead Redis gives an error, never a hang
DEFAULT_METRICS_INTERVAL = 5.0  # seconds between container usage samples and autoscaler passes
DEFAULT_POD_CIDR = "10.244.0.0/16"  # the cluster's container addresses, a /24 per engine (flannel's default)
# Seconds between an agent's looks at the pod network's routes and firewall rules (worker/pod_network.py):
# each reads every node record and runs `ip route` and `iptables -C` twice. Not the heartbeat's period,
# which failure detection wants short: a joining or returning engine is routed within this.
DEFAULT_POD_NETWORK_INTERVAL = 2.0

# The cluster DNS each node agent serves (worker/dns.py).
DEFAULT_DNS_PORT = 53
DEFAULT_DNS_TTL = 1  # seconds clients may keep an answer: names follow replicas within 2 s
DEFAULT_DNS_UPSTREAM_TIMEOUT = 2.0  # a forwarded name no upstream answered by then is SERVFAIL
DEFAULT_DISCOVERY_POLL_INTERVAL = 0.2  # how often the DNS looks at the store's revision token
