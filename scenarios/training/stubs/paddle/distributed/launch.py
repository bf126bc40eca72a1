"""``python -m paddle.distributed.launch ...``: run ``scenarios/training/rendezvous_check.py`` (PaddleJob mode)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import rendezvous_check  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(rendezvous_check.main())
