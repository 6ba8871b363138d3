"""Container health check: exit 0 iff the node's REST API answers /healthz with 200.

Uses only the standard library so it runs in any base image; the port comes
from GRIDCHAIN_API_PORT (8080 in the image).
"""

import os
import sys
import urllib.request

port = os.environ.get("GRIDCHAIN_API_PORT", "8080")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"healthz failed: {exc}", file=sys.stderr)
    sys.exit(1)
