"""Write docs/api-schema.json from core/api_schema.py (tests/test_api_schema.py checks it is current).

    python scripts/api_schema.py
"""

import json
import sys
from pathlib import Path

from adaptinf.api_schema import json_schema

OUT = Path(__file__).resolve().parent.parent / "docs" / "api-schema.json"


def render() -> str:
    return json.dumps(json_schema(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
    sys.exit(0)
