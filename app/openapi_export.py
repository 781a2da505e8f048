"""`python -m app.openapi_export PATH`: write the app's OpenAPI document (`make openapi`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.main import openapi_document


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "openapi/openapi.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
