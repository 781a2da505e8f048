"""Demo `lookup_order` tool for examples/runtime.yaml (PromptKit's exec protocol).

Reads {"args": {"order_id": ...}} on stdin, answers {"result": {...}} on stdout. The orders
are canned; bind the tool to your order API with an `http` binding instead (see README).
"""

from __future__ import annotations

import json
import sys

ORDERS = {
    "A-10293": {
        "status": "shipped",
        "items": ["Trail running shoes", "Wool socks"],
        "city": "Lyon",
        "carrier": "Colissimo",
        "tracking": "6A1234567890",
        "eta": "2026-12-04",
    },
    "A-10400": {"status": "processing", "items": ["Rain jacket"], "eta": "2026-12-09"},
}

order_id = json.load(sys.stdin).get("args", {}).get("order_id", "")
order = ORDERS.get(order_id)
if order is None:
    print(json.dumps({"error": f"no order {order_id!r}; ask the customer to check the number"}))
else:
    print(json.dumps({"result": {"order_id": order_id, **order}}))
