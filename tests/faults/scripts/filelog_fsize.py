"""FileLog past RLIMIT_FSIZE (a full disk, without root): whole lines only, the lost counted.

Usage: filelog_fsize.py LOG. Prints, as its last line, a JSON report: events sent while over
the limit, how many the handler counted as dropped, and what flush() said while over the
limit and after it was raised (space back).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys

from hookwire import CallbackManager
from hookwire.callbacks import FileLogCallback

path = sys.argv[1]
# Past the limit the kernel sends SIGXFSZ, which would kill us: ignored, the write fails with
# EFBIG instead (after a write that is cut short at the limit).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

log = FileLogCallback(path)
manager = CallbackManager([log])
manager.on_memory_store("before", run_id="r")
assert manager.flush(10)
limit = os.path.getsize(path) + 3000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
sent = 0
for i in range(40):
    manager.on_memory_store(f"while full {i} " + "x" * 150, run_id="r")
    sent += 1
    if i % 10 == 9:
        manager.flush(10)
flush_while_full = log.flush()
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
manager.on_memory_store("after", run_id="r")
flush_after = log.flush()
log.close()
print(
    json.dumps(
        {
            "sent": sent,
            "dropped": log.dropped,
            "flush_while_full": flush_while_full,
            "flush_after": flush_after,
        }
    )
)
