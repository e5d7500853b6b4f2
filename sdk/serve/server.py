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

Closed by default: Triton runs with ``--model-control-mode=none`` on a folder that holds links to
exactly the models the operator chose, so no client can load (and so run code of its own), unload
or reload a model; the model-repository, shared-memory, logging, trace and statistics APIs are
further restricted to requests carrying a key that only the operator has (``admin_key``).

Stopping sends SIGINT: Triton stops taking requests, finishes the ones in flight (up to
``exit_timeout_s``), unloads the models and exits; a server still running after that is killed
with its backend stubs and their shared memory, and the stop reports that the drain failed.
The whole stop fits Kubernetes' default 30 s grace period.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segrt.errors import BackendUnavailableError, ServerError
from segrt.serve import protocol
from segrt.serve.repository import pipeline_models


@dataclass(frozen=True)
class TritonInstall:
    """Where a runnable tritonserver is: the binary, its backends and the libraries it needs."""

    binary: Path
    backend_dir: Path | None  # None: the binary's own default (/opt/tritonserver/backends)
    python_stub: Path | None  # the Python backend stub built for this interpreter (bundled server)
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
        raise BackendUnavailableError(
            "no Triton Inference Server: `tritonserver` is not on PATH and nvidia-pytriton is not installed",
            "pip install 'segrt[serve]' (bundles tritonserver), or run "
            "inside nvcr.io/nvidia/tritonserver:<version>-py3",
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise BackendUnavailableError(
            f"nvidia-pytriton is installed but has no server binary at {binary}",
            "reinstall it: pip install --force-reinstall nvidia-pytriton",
        )
    if not stub.is_file():
        raise BackendUnavailableError(
            f"nvidia-pytriton has no Python backend stub for Python {version}",
            "use a Python version it ships stubs for (3.8 to 3.13)",
        )
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
    assert install.python_stub is not None  # found together with the bundled backends
    shutil.copy2(install.python_stub, dest / "python" / "triton_python_backend_stub")
    return dest


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: this interpreter's libpython first, the bundled libraries, this Python on PATH."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR")
    dirs = [d for d in [libdir, *map(str, install.library_dirs), env.get("LD_LIBRARY_PATH", "")] if d]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The stub imports segrt. An installed package sits in a folder named segrt: put the folder above it
    # first, so the stub imports this very copy. An editable checkout (sdk/) is found through this
    # environment's site-packages, whose import hook maps segrt to sdk/.
    package = Path(__file__).resolve().parents[1]
    if package.name == "segrt":
        env["PYTHONPATH"] = os.pathsep.join([p for p in (str(package.parent), env.get("PYTHONPATH")) if p])
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
        found += [
            (int(stat.parent.name), a.decode()) for a in args if a.startswith(b"triton_python_backend_shm_region_")
        ]
    return found


def _reap_stubs(stubs: list[tuple[int, str]], grace_s: float) -> None:
    """After its server is gone: SIGKILL each stub still running after ``grace_s`` and remove its shared memory.

    A pid is killed only while its command line still names its region (never a reused pid).
    """
    deadline = time.monotonic() + grace_s
    for pid, region in stubs:
        cmdline = Path(f"/proc/{pid}/cmdline")
        while time.monotonic() < deadline and _names(cmdline, region):
            time.sleep(0.05)
        if _names(cmdline, region):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        Path("/dev/shm", region).unlink(missing_ok=True)


def _names(cmdline: Path, region: str) -> bool:
    """Whether a live (non-zombie) process's command line names ``region``."""
    try:
        return region.encode() in cmdline.read_bytes()
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM (a draining stop) when the thread that started the server dies,
    so a killed ``segrt serve`` never leaves a server behind (Linux prctl PR_SET_PDEATHSIG).

    The signal follows the *thread* that forked, so :class:`TritonServer` forks from a thread of its
    own that lives exactly as long as the server (a ``start()`` from a short-lived worker thread is safe).
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# APIs only the operator may call: the repository (index, load, unload), shared-memory registration,
# log settings, traces and statistics. Health, metadata, model config and inference stay open.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace", "statistics")
ADMIN_HEADER = protocol.ADMIN_HEADER
STOP_GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds
KILL_MARGIN_S = 5.0  # kept back from the grace period for the SIGKILL fallback and its cleanup


def port_taken(host: str, port: int) -> bool:
    """Whether TCP ``port`` on ``host`` is already bound by another process."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not "taken"
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class TritonServer:
    """A tritonserver process on a model repository; a context manager that stops it on exit.

    Args:
        repo: model repository (``write_model_repository``).
        models: models to load (default: the repository's segrt pipeline models, and the network
            models of BLS pipelines; other ``_net`` models need backends the bundled server lacks).
            Nothing else is ever loaded: the server sees a folder of links to these models only.
        host: address the endpoints listen on (127.0.0.1: this machine only; 0.0.0.0: all).
        http_port, grpc_port, metrics_port: endpoint ports.
        exit_timeout_s: on stop, how long in-flight requests may take to finish (at most 25 s, so
            that the whole stop, SIGKILL fallback included, fits in 30 s).
        log_file: server log path; ``"-"`` sends it to this process's stdout (``kubectl logs``);
            default: a file in the server's work folder, kept on failures.
        admin_key: value of the ``segrt-admin-key`` header that unlocks the restricted APIs
            (:data:`RESTRICTED_APIS`); default: the ``SEGRT_ADMIN_KEY`` environment variable, else a random
            key nobody is told, i.e. closed.
    """

    def __init__(
        self,
        repo: str | Path,
        models: Sequence[str] | None = None,
        *,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        exit_timeout_s: int = 20,
        log_file: str | Path | None = None,
        admin_key: str | None = None,
    ) -> None:
        self.repo = Path(repo).resolve()
        self.models = list(models) if models is not None else pipeline_models(self.repo, with_networks=True)
        if not self.models:
            raise ServerError(
                f"{self.repo} holds no segrt pipeline model",
                "write one with write_model_repository, or pass .onnx/.engine files to segrt serve",
            )
        missing = [m for m in self.models if not (self.repo / m / "config.pbtxt").is_file()]
        if missing:
            raise ServerError(f"{self.repo} has no model {', '.join(missing)}", "name models the repository holds")
        self.host, self.http_port, self.grpc_port, self.metrics_port = host, http_port, grpc_port, metrics_port
        self.exit_timeout_s = max(1, min(int(exit_timeout_s), int(STOP_GRACE_S - KILL_MARGIN_S)))
        self.admin_key = admin_key or os.environ.get("SEGRT_ADMIN_KEY") or secrets.token_hex(16)
        self.install = find_tritonserver()
        self._work = Path(tempfile.mkdtemp(prefix="segrt-triton-"))
        self.log_to_stdout = str(log_file) == "-"
        self.log_file = self._work / "tritonserver.log" if not log_file or self.log_to_stdout else Path(log_file)
        self.process: subprocess.Popen | None = None
        self.drained: bool | None = None  # after stop(): whether the server exited by itself

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

    def _model_view(self) -> Path:
        """A repository folder holding links to exactly ``self.models`` (what ``none`` mode loads: everything)."""
        view = self._work / "models"
        if not view.exists():
            view.mkdir()
            for m in self.models:
                (view / m).symlink_to(self.repo / m, target_is_directory=True)
        return view

    def _max_pixels(self) -> int:
        """The largest ``max_pixels`` of the served models: OpenCV's decoder is bounded by it."""
        from segrt.serve.repository import parse_config

        limits = [protocol.DEFAULT_MAX_PIXELS]
        for m in self.models:
            params = parse_config((self.repo / m / "config.pbtxt").read_text()).parameters
            if "max_pixels" in params:
                limits.append(int(params["max_pixels"].string_value))
        return max(limits)

    def command(self) -> list[str]:
        """The tritonserver command line (closed by default: see the module doc)."""
        backends = (
            prepare_backends(self.install, self._work)
            if not (self._work / "backends").exists()
            else self._work / "backends"
        )
        restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self.admin_key}"
        cmd = [
            str(self.install.binary),
            f"--model-repository={self._model_view()}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--log-info=true",
        ]
        if backends is not None:
            cmd.append(f"--backend-directory={backends}")
        return cmd

    def environment(self) -> dict[str, str]:
        """The server's environment: :func:`server_environment` plus OpenCV's decoder bound."""
        env = server_environment(self.install)
        # cv2.imdecode refuses images above this before allocating them (its own default is 2^30 pixels)
        env["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(self._max_pixels())
        return env

    def start(self, timeout_s: float = 60.0) -> TritonServer:
        """Start the server and wait until it and each of its models are ready.

        ServerError, before anything starts, when one of the three ports is taken (Triton would
        load its models first and only then fail to bind, while the other server answers our
        health checks); ServerError with the log tail when it exits or is not ready in time.
        """
        if self.process is not None and self.process.poll() is None:
            return self
        for what, port in (("HTTP", self.http_port), ("gRPC", self.grpc_port), ("metrics", self.metrics_port)):
            if port_taken(self.host, port):
                raise ServerError(
                    f"the {what} port {port} on {self.host} is already in use (another server?)",
                    f"stop what holds it (e.g. `ss -ltnp 'sport = :{port}'`), or pick another "
                    f"port (--{what.lower()}-port)",
                )
        cmd, env = self.command(), self.environment()
        self.drained = None
        self.process = self._launch(cmd, env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} while starting:\n{self.log_tail()}",
                    f"see the full log in {self._keep_log()}",
                )
            if self.ready() and self._grpc_open() and self.process.poll() is None:
                not_ready = [m for m in self.models if not self._get(f"/v2/models/{m}/ready")]
                if not not_ready and self.process.poll() is None:  # ours answered, not another server
                    return self
            time.sleep(0.2)
        self.stop()
        raise ServerError(
            f"tritonserver was not ready after {timeout_s:.0f} s:\n{self.log_tail()}",
            f"see the full log in {self._keep_log()}",
        )

    def _launch(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Fork the server from a thread that lives as long as the server (PR_SET_PDEATHSIG follows threads)."""
        handoff: queue.Queue = queue.Queue()

        def keeper() -> None:
            try:
                # the server's stdout: ours (None) or the log file, closed here once the child holds it
                with contextlib.nullcontext() if self.log_to_stdout else open(self.log_file, "ab") as out:
                    # own session: a Ctrl-C in the terminal reaches only segrt, which then stops the server once
                    proc = subprocess.Popen(
                        cmd,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                    )
            except BaseException as exc:  # hand the failure to start()
                handoff.put(exc)
                return
            handoff.put(proc)
            while proc.poll() is None:  # keep this thread (the server's parent thread) alive while it runs
                time.sleep(0.5)

        threading.Thread(target=keeper, name="tritonserver-keeper", daemon=True).start()
        got = handoff.get()
        if isinstance(got, BaseException):
            raise ServerError(f"cannot start {cmd[0]}: {got}", "check the Triton installation") from None
        return got

    def _keep_log(self) -> Path | str:
        """A copy of the log that ``cleanup`` leaves in place, for error messages."""
        if self.log_to_stdout:
            return "the output above"
        if not self.log_file.is_relative_to(self._work):
            return self.log_file
        fd, kept = tempfile.mkstemp(prefix="segrt-tritonserver-", suffix=".log")
        os.close(fd)
        shutil.copyfile(self.log_file, kept)
        return Path(kept)

    def _get(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}{path}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _grpc_open(self) -> bool:
        """Whether the gRPC port accepts connections (Triton binds it after HTTP's)."""
        try:
            with socket.create_connection((self._client_host, self.grpc_port), timeout=2):
                return True
        except OSError:
            return False

    def ready(self) -> bool:
        """GET /v2/health/ready (server and all loaded models ready)."""
        return self._get("/v2/health/ready")

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGINT (drain in-flight requests, unload, exit); if it outlives ``timeout_s`` (default: the exit
        timeout plus a margin, 30 s in all at most), SIGKILL. Either way, backend stubs that outlive the
        server are killed and their shared memory removed.

        Returns the exit code; ``self.drained`` tells whether the server stopped by itself.
        """
        p = self.process
        if p is None:
            return None
        if p.poll() is None:
            stubs = _stubs(p.pid)
            p.send_signal(signal.SIGINT)
            wait_s = self.exit_timeout_s + KILL_MARGIN_S - 2 if timeout_s is None else timeout_s
            try:
                p.wait(timeout=wait_s)
                self.drained = True
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.drained = False
            # a server whose own exit timeout expired exits at once and leaves its stubs (they ignore signals)
            _reap_stubs(stubs, grace_s=1.0)
        elif self.drained is None:
            self.drained = p.returncode == 0
        return p.returncode

    def kill(self) -> None:
        """SIGKILL the server at once (what a crash looks like to clients), then its backend stubs.

        The stubs outlive a killed server (they ignore its death), and the shared-memory regions
        they share with it, which a killed server cannot remove, are removed here.
        """
        if self.process is not None and self.process.poll() is None:
            stubs = _stubs(self.process.pid)
            self.process.kill()
            self.process.wait()
            _reap_stubs(stubs, grace_s=0.0)
            self.drained = False

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        assert self.process is not None
        return self.process.wait()

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the server log."""
        if self.log_to_stdout:
            return "(the server log went to stdout)"
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def cleanup(self) -> None:
        """Remove the work folder (backends copy, model links, default log)."""
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()
