"""Docker labels put on every container, network and volume the cluster makes; cleanup selects by them."""

CLUSTER = "gorchester.cluster"
SERVICE = "gorchester.service"
TASK = "gorchester.task"
NODE = "gorchester.node"
GEN = "gorchester.gen"
INCARNATION = "gorchester.incarnation"  # the task record's incarnation (shared/records.py)
