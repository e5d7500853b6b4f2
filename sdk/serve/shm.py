"""System shared memory for a client on the server's machine: tensors skip the socket.

Each client thread keeps one POSIX shared-memory region (``/dev/shm``), registered with the
server under a name of its own, that holds a request's input and outputs one after another.
The region grows (re-created, re-registered) when a request needs more, and is unregistered and
removed on :meth:`SharedMemoryArena.close`.

Registering a region makes the server map it, so ``segrt serve`` keeps the shared-memory API
closed to clients without the operator's key (``segrt-admin-key``, see ``segrt.serve.server``):
a co-located client that uses shared memory is given that key.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

ALIGN = 64  # byte alignment of each tensor inside the region


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class SharedMemoryArena:
    """One registered system shared-memory region, reused request after request (one per client thread).

    Args:
        client: a tritonclient ``InferenceServerClient`` (HTTP or gRPC) of this thread.
        headers: headers of the register/unregister calls (the admin key).
        client_kwargs: extra keyword arguments of those calls (e.g. the gRPC ``client_timeout``).
    """

    _count = 0
    _lock = threading.Lock()

    def __init__(self, client: Any, headers: dict[str, str] | None, **client_kwargs: Any) -> None:
        import tritonclient.utils.shared_memory as shm

        self._shm = shm
        self.client = client
        self.headers = headers
        self.kwargs = client_kwargs
        self.handle: Any = None
        self.capacity = 0
        self.name = ""

    def ensure(self, nbytes: int) -> None:
        """Make the region at least ``nbytes`` bytes (re-created and re-registered when it grows)."""
        if nbytes <= self.capacity:
            return
        self.close()
        with SharedMemoryArena._lock:
            SharedMemoryArena._count += 1
            n = SharedMemoryArena._count
        self.name = f"segrt_{os.getpid()}_{threading.get_ident()}_{n}"
        size = max(nbytes, 2 * self.capacity)  # grow geometrically: few re-registrations
        handle = self._shm.create_shared_memory_region(self.name, "/" + self.name, size)
        try:
            self.client.register_system_shared_memory(
                self.name, "/" + self.name, size, headers=self.headers, **self.kwargs
            )
        except BaseException:  # refused (no key) or unreachable: leave nothing behind in /dev/shm
            self._shm.destroy_shared_memory_region(handle)
            raise
        self.handle, self.capacity = handle, size

    def layout(self, sizes: list[int]) -> list[int]:
        """Offsets (bytes) of tensors of these byte sizes placed one after another; the region is made to fit."""
        offsets, at = [], 0
        for n in sizes:
            offsets.append(at)
            at += _aligned(n)
        self.ensure(max(at, ALIGN))
        return offsets

    def write(self, array: np.ndarray, offset: int) -> None:
        """Copy ``array`` into the region at ``offset``."""
        self._shm.set_shared_memory_region(self.handle, [np.ascontiguousarray(array)], offset=offset)

    def read(self, dtype: Any, shape: list[int], offset: int) -> np.ndarray:
        """A copy of the tensor of numpy ``dtype`` at ``offset`` (the region is reused by the next request)."""
        return np.array(self._shm.get_contents_as_numpy(self.handle, np.dtype(dtype), shape, offset=offset), copy=True)

    def close(self) -> None:
        """Unregister and remove the region (best effort: the server may be gone)."""
        if self.handle is None:
            return
        try:
            self.client.unregister_system_shared_memory(self.name, headers=self.headers, **self.kwargs)
        except Exception:  # a dead server has nothing left to unregister
            pass
        self._shm.destroy_shared_memory_region(self.handle)
        self.handle, self.capacity = None, 0
