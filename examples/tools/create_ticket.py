"""Demo `create_ticket` tool for examples/runtime.yaml (PromptKit's exec protocol).

Reads {"args": {"subject", "description", "priority", "order_id"?}} on stdin and answers
{"result": {"ticket": ..., "priority": ...}}. A real one would call your helpdesk with the
token it gets through the binding's `env` list (HELPDESK_TOKEN); this one only appends the
ticket to tickets.log next to it when TICKETS_LOG names a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

args = json.load(sys.stdin).get("args", {})
digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()
ticket = f"T-{int(digest[:8], 16) % 100000:05d}"
log = os.environ.get("TICKETS_LOG")
if log:
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"ticket": ticket, **args}) + "\n")
print(json.dumps({"result": {"ticket": ticket, "priority": args.get("priority", "normal")}}))
