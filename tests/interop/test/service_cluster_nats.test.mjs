// Service mode on two nodes through nats (the cases: lib/service_cluster.mjs,
// one file per broker so each stays within the runner's per-file timeout).

import { serviceClusterSuite } from "../lib/service_cluster.mjs";

serviceClusterSuite("nats");
