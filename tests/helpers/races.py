"""Requests sent at the same moment from several threads (a double click, two tabs, a script)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


def at_once(sends) -> list:
    """Call each function of `sends` on its own thread, all released together by a barrier;
    their results in order."""
    barrier = threading.Barrier(len(sends))

    def one(send):
        barrier.wait(timeout=10)
        return send()

    with ThreadPoolExecutor(len(sends)) as pool:
        return list(pool.map(one, sends))
