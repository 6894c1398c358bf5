"""One QEMU guest booted against a back-end: start, wait for the agent, mount, always end.

    with boot(Image.load(), [share]) as vm:
        vm.mount()                       # each share at its mountpoint, /mnt/TAG
        vm.agent.check("ls -la /mnt/pagefs")

The guest's memory is a shared memfd (`memory-backend-memfd,share=on`, what vhost-user
needs). The agent's virtio-serial port is a unix socket this side listens on and QEMU
connects to, so nothing the agent says before we look is lost. Leaving the block ends
QEMU (SIGTERM, then SIGKILL) whatever happened; QEMU also dies with this process.
The kernel's console goes to `console.log` in the machine's work directory, and its tail
is part of every error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pagefs.conformance.vm.agent import Agent, AgentLost
from pagefs.conformance.vm.backends import Share
from pagefs.conformance.vm.image import Image
from pagefs.impl.client.child import die_with_parent

BOOT_LIMIT = 300.0  # seconds: under TCG on a loaded machine a boot takes 10-90 s
STOP_WAIT = 10.0
CONSOLE_LINES = 15


class MachineError(RuntimeError):
    """The guest did not come up or died; the message carries its console's tail."""


@dataclass(frozen=True)
class Qemu:
    """How to run a QEMU: the command prefix, and firmware directories for `-L`."""

    command: tuple[str, ...] = ("qemu-system-x86_64",)
    firmware: tuple[str, ...] = ()
    version: str = "system"

    def check(self) -> None:
        if shutil.which(self.command[0]) is None:
            raise MachineError(f"{self.command[0]} not found: apt-get install qemu-system-x86")


SYSTEM_QEMU = Qemu()  # the system's qemu-system-x86 (7.2 on bookworm)


@dataclass
class Timings:
    """Seconds from QEMU's start: the agent answering, and the share mounted."""

    agent_ready: float = 0.0
    mounted: float = 0.0


@dataclass
class Machine:
    image: Image
    shares: list[Share]
    qemu: Qemu
    memory_mib: int
    resets_exit: bool
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="pagefs-vm-"))
    process: subprocess.Popen | None = None
    agent: Agent = field(init=False)
    timings: Timings = field(default_factory=Timings)
    _started: float = 0.0
    _listener: socket.socket | None = None

    @property
    def console_path(self) -> str:
        return os.path.join(self.workdir, "console.log")

    def console(self, lines: int = CONSOLE_LINES) -> str:
        try:
            with open(self.console_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def command(self, agent_socket: str) -> list[str]:
        mem = f"{self.memory_mib}M"
        args = [*self.qemu.command]
        for d in self.qemu.firmware:
            args += ["-L", d]
        args += ["-accel", "tcg", "-smp", "1", "-m", mem,
                 "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
                 "-machine", "pc,memory-backend=mem",
                 "-nodefaults", "-no-user-config", "-display", "none", "-nic", "none",
                 "-serial", f"file:{self.console_path}", "-monitor", "none",
                 "-kernel", str(self.image.kernel), "-initrd", str(self.image.initramfs),
                 "-append", "console=ttyS0 loglevel=4 panic=-1",
                 "-chardev", f"socket,id=agent,path={agent_socket}",
                 "-device", "virtio-serial-pci",
                 "-device", "virtserialport,chardev=agent,name=pagefs.agent"]
        for share in self.shares:
            args += share.qemu_args
        if self.resets_exit:
            args.append("-no-reboot")
        return args

    def start(self) -> None:
        self.qemu.check()
        agent_socket = os.path.join(self.workdir, "agent.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(agent_socket)
        self._listener.listen(1)
        self._log = open(os.path.join(self.workdir, "qemu.log"), "wb")
        self._started = time.monotonic()
        self.process = subprocess.Popen(self.command(agent_socket), stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent())
        self._listener.settimeout(1.0)
        while True:
            self._check_alive("connecting to the agent's port")
            with contextlib.suppress(TimeoutError):
                conn, _ = self._listener.accept()
                break
        conn.settimeout(None)
        self.agent = Agent(conn)
        self.wait_ready()
        self.timings.agent_ready = time.monotonic() - self._started

    def _check_alive(self, doing: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise MachineError(f"QEMU exited ({self.process.returncode}) while {doing}: "
                               f"{self.qemu_log()}\nconsole:\n{self.console()}"
                               f"\nback-ends:\n{self.backend_logs()}")
        if time.monotonic() - self._started > BOOT_LIMIT:
            raise MachineError(f"no agent after {BOOT_LIMIT} s\nconsole:\n{self.console()}")

    def diagnosis(self) -> str:
        """What to look at when the guest stops answering: QEMU's state and log, the
        guest's console, the back-ends' logs."""
        assert self.process is not None
        state = ("QEMU running" if self.process.poll() is None
                 else f"QEMU exited ({self.process.returncode})")
        return (f"{state}; QEMU said: {self.qemu_log()[-600:] or '(nothing)'}\n"
                f"console:\n{self.console()}\nback-ends:\n{self.backend_logs()}")

    def backend_logs(self, chars: int = 1500) -> str:
        return "\n".join(f"{s.name}: {s.log()[-chars:]}" for s in self.shares)

    def qemu_log(self) -> str:
        with open(os.path.join(self.workdir, "qemu.log"), errors="replace") as f:
            return f.read().strip()[-1500:]

    def wait_ready(self) -> None:
        """Until the agent announces itself (after boot, or after a reset), at most
        BOOT_LIMIT seconds."""
        try:
            status, *said = self.agent.receive(BOOT_LIMIT, "its first words after a boot")
        except AgentLost as e:
            self._check_alive("waiting for the agent")
            raise MachineError(f"{e}\n{self.diagnosis()}") from None
        if status != b"0" or said != [b"pagefs-agent ready"]:
            raise MachineError(f"unexpected first words from the agent: {status!r} {said!r}")

    def mount(self) -> float:
        """Mount every share at its mountpoint; seconds the mounts took (also recorded
        from boot)."""
        begun = time.monotonic()
        for share in self.shares:
            self.agent.check(share.mount)
        self.timings.mounted = time.monotonic() - self._started
        return time.monotonic() - begun

    def reset(self) -> float:
        """`reboot -f` in the guest (no unmount, no sync) and wait for the new agent;
        seconds until it answers. Needs `resets_exit=False`."""
        begun = time.monotonic()
        self.agent.call("sh", "(sleep 1; reboot -f) >/dev/null 2>&1 &")
        self.wait_ready()
        return time.monotonic() - begun

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self.agent.close()
        if self._listener is not None:
            self._listener.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(AttributeError):
            self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def boot(image: Image, shares: list[Share], *, qemu: Qemu = SYSTEM_QEMU, memory_mib: int = 512,
         resets_exit: bool = True) -> Iterator[Machine]:
    """A running guest whose agent answers; ended when the block is left."""
    machine = Machine(image, shares, qemu, memory_mib, resets_exit)
    try:
        machine.start()
        yield machine
    finally:
        machine.close()
