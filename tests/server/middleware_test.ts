/**
 * The middleware tests live beside their middleware (src/server/middleware/<name>/), as in
 * Hono; importing them here runs them with the rest of tests/.
 */

import "../../src/server/middleware/access_log/access_log_test.ts";
import "../../src/server/middleware/bearer_auth/bearer_auth_test.ts";
import "../../src/server/middleware/body_limit/body_limit_test.ts";
import "../../src/server/middleware/content_type/content_type_test.ts";
import "../../src/server/middleware/drain_gate/drain_gate_test.ts";
import "../../src/server/middleware/host_check/host_check_test.ts";
import "../../src/server/middleware/origin_check/origin_check_test.ts";
import "../../src/server/middleware/request_metrics/request_metrics_test.ts";
import "../../src/server/middleware/stream_limit/stream_limit_test.ts";
