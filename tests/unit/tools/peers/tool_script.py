"""An exec tool for the tests (PromptKit's exec protocol: {"args": ...} on stdin).

Behaviour by argv[1]: weather (answers from args), env (reports its environment),
error (answers {"error": ...}), exit3 (exits 3 with stderr), badjson, nan (NaN: no JSON),
hang (sleeps forever after spawning a grandchild that writes its pid to argv[2] and also
sleeps), big N (writes N bytes of JSON string), raw (answers a bare object without "result").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

mode = sys.argv[1]
request = json.loads(sys.stdin.read() or "{}")
args = request.get("args", {})
if mode == "weather":
    print(json.dumps({"result": {"city": args.get("city"), "temp_c": 21, "args": args}}))
elif mode == "env":
    print(json.dumps({"result": dict(os.environ)}))
elif mode == "error":
    print(json.dumps({"error": "the city is unknown"}))
elif mode == "exit3":
    sys.stderr.write("something broke\n")
    sys.exit(3)
elif mode == "badjson":
    print("this is not json")
elif mode == "nan":
    print('{"result": {"temp_c": NaN}}')  # what json.dumps writes for a NaN
elif mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[2], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)
elif mode == "big":
    print(json.dumps({"result": "x" * int(sys.argv[2])}))
elif mode == "raw":
    print(json.dumps({"sentiment": "positive"}))
