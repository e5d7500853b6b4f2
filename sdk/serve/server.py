"""Start and stop a real Triton Inference Server on a segrt model repository.

The binary is ``tritonserver`` from PATH when there is one (e.g. inside the official
container), else the one bundled in the ``nvidia-pytriton`` wheel (``pip install 'segrt[serve]'``),
which has the Python backend only: enough for the segrt pipeline models.

Two environment details are handled here so that a user never meets them:

* the Python backend stub links ``libpython3.X.so.1.0`` and must get the running interpreter's
  own (another Python's library of the same minor version, e.g. Debian's beside pyenv's, fails at
  model load with errors like ``'_thread.RLock' object has no attribute '_recursion_count'``):
  the interpreter's ``LIBDIR`` goes first on the server's ``LD_LIBRARY_PATH``;
* the stub finds its Python by name on PATH: the running interpreter's folder goes first on PATH,
  so the server imports this environment's ``segrt``, ONNX Runtime and OpenCV.

Stopping sends SIGINT: Triton stops taking requests, finishes the ones in flight (up to
``exit_timeout_s``), unloads the models and exits.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from segrt.errors import BackendUnavailableError, ServerError
from segrt.serve.repository import pipeline_models


@dataclass(frozen=True)
class TritonInstall:
    """Where a runnable tritonserver is: the binary, its backends and the libraries it needs."""

    binary: Path
    backend_dir: Path | None     # None: the binary's own default (/opt/tritonserver/backends)
    python_stub: Path | None     # the Python backend stub built for this interpreter (bundled server)
    library_dirs: tuple[Path, ...]


def find_tritonserver() -> TritonInstall:
    """``tritonserver`` from PATH, else the one bundled in nvidia-pytriton; BackendUnavailableError if neither."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(Path(on_path), None, None, ())
    try:
        import importlib.util
        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("no Triton Inference Server: `tritonserver` is not on PATH and nvidia-pytriton "
                                      "is not installed", "pip install 'segrt[serve]' (bundles tritonserver), or run "
                                      "inside nvcr.io/nvidia/tritonserver:<version>-py3")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise BackendUnavailableError(f"nvidia-pytriton is installed but has no server binary at {binary}",
                                      "reinstall it: pip install --force-reinstall nvidia-pytriton")
    if not stub.is_file():
        raise BackendUnavailableError(f"nvidia-pytriton has no Python backend stub for Python {version}",
                                      "use a Python version it ships stubs for (3.8 to 3.13)")
    libs = root.parent.parent / "nvidia_pytriton.libs"  # the wheel's vendored libraries (auditwheel)
    return TritonInstall(binary, root / "backends", stub, (libs,) if libs.is_dir() else ())


def prepare_backends(install: TritonInstall, work_dir: Path) -> Path | None:
    """A backend folder for this interpreter: the bundled backends plus the matching Python stub.

    The wheel ships one stub per Python version; the Python backend looks for
    ``python/triton_python_backend_stub`` in its own folder, so the tree is copied (a few MB).
    """
    if install.backend_dir is None:
        return None
    dest = work_dir / "backends"
    shutil.copytree(install.backend_dir, dest, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(install.python_stub, dest / "python" / "triton_python_backend_stub")
    return dest


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: this interpreter's libpython first, the bundled libraries, this Python on PATH."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR")
    dirs = [d for d in [libdir, *map(str, install.library_dirs), env.get("LD_LIBRARY_PATH", "")] if d]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # the stub imports segrt: make this checkout importable even when segrt is not pip-installed
    segrt_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([p for p in (segrt_root, env.get("PYTHONPATH")) if p])
    return env


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now (for tests and benchmarks; another process may
    take one before the server binds it)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stubs(server_pid: int) -> list[tuple[int, str]]:
    """(pid, shared-memory region name) of each Python-backend stub a server started (from /proc, Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != server_pid:
                continue
            args = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        found += [(int(stat.parent.name), a.decode()) for a in args
                  if a.startswith(b"triton_python_backend_shm_region_")]
    return found


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM (a draining stop) when the process that started the server dies,
    so a killed ``segrt serve`` never leaves a server behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServer:
    """A tritonserver process on a model repository; a context manager that stops it on exit.

    Args:
        repo: model repository (``write_model_repository``).
        models: models to load (default: the repository's segrt pipeline models, and the network
            models of BLS pipelines; other ``_net`` models need backends the bundled server lacks).
        host: address the endpoints listen on (127.0.0.1: this machine only; 0.0.0.0: all).
        http_port, grpc_port, metrics_port: endpoint ports.
        exit_timeout_s: on stop, how long in-flight requests may take to finish.
        log_file: server log (default: a file in the server's work folder, kept on failures).
    """

    def __init__(self, repo: str | Path, models: Sequence[str] | None = None, *, host: str = "127.0.0.1",
                 http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 exit_timeout_s: int = 30, log_file: str | Path | None = None) -> None:
        self.repo = Path(repo).resolve()
        self.models = list(models) if models is not None else pipeline_models(self.repo, with_networks=True)
        if not self.models:
            raise ServerError(f"{self.repo} holds no segrt pipeline model",
                              "write one with write_model_repository, or pass .onnx/.engine files to segrt serve")
        self.host, self.http_port, self.grpc_port, self.metrics_port = host, http_port, grpc_port, metrics_port
        self.exit_timeout_s = int(exit_timeout_s)
        self.install = find_tritonserver()
        self._work = Path(tempfile.mkdtemp(prefix="segrt-triton-"))
        self.log_file = Path(log_file) if log_file else self._work / "tritonserver.log"
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def command(self) -> list[str]:
        backends = prepare_backends(self.install, self._work) if not (self._work / "backends").exists() \
            else self._work / "backends"
        cmd = [str(self.install.binary), f"--model-repository={self.repo}", "--model-control-mode=explicit",
               *[f"--load-model={m}" for m in self.models], "--strict-readiness=true",
               f"--http-address={self.host}", f"--http-port={self.http_port}",
               f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
               f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
               f"--exit-timeout-secs={self.exit_timeout_s}", "--log-info=true"]
        if backends is not None:
            cmd.append(f"--backend-directory={backends}")
        return cmd

    def start(self, timeout_s: float = 60.0) -> "TritonServer":
        """Start the server and wait until it and its models are ready; ServerError with the log tail if not."""
        if self.process is not None and self.process.poll() is None:
            return self
        cmd = self.command()
        log = open(self.log_file, "ab")
        # own session: a Ctrl-C in the terminal reaches only segrt, which then stops the server once, cleanly
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=server_environment(self.install), start_new_session=True,
                                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode} while starting:\n"
                                  f"{self.log_tail()}", f"see the full log in {self._keep_log()}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout_s:.0f} s:\n{self.log_tail()}",
                          f"see the full log in {self._keep_log()}")

    def _keep_log(self) -> Path:
        """A copy of the log that ``cleanup`` leaves in place, for error messages."""
        if not self.log_file.is_relative_to(self._work):
            return self.log_file
        fd, kept = tempfile.mkstemp(prefix="segrt-tritonserver-", suffix=".log")
        os.close(fd)
        shutil.copyfile(self.log_file, kept)
        return Path(kept)

    def ready(self) -> bool:
        """GET /v2/health/ready (server and all loaded models ready)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGINT (drain in-flight requests, unload, exit); SIGKILL only if it outlives ``timeout_s``."""
        p = self.process
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=self.exit_timeout_s + 15 if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def kill(self) -> None:
        """SIGKILL the server at once (what a crash looks like to clients); its stubs exit when it is gone.

        The shared-memory regions of its Python-backend stubs, which a killed server cannot remove,
        are removed here.
        """
        if self.process is not None and self.process.poll() is None:
            stubs = _stubs(self.process.pid)
            self.process.kill()
            self.process.wait()
            for pid, region in stubs:  # the stubs outlive a killed server (they ignore its death)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                Path("/dev/shm", region).unlink(missing_ok=True)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def cleanup(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()
