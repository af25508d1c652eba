"""The MCU rig without a board: the real firmware in QEMU's netduinoplus2 (STM32F405, Cortex-M4F).

USART1 is a TCP server socket (wait=off) the host reaches as socket://127.0.0.1:PORT through
pyserial, exactly as it would /dev/ttyACM0. `-icount shift=0,sleep=off` makes the guest
deterministic: one instruction per virtual ns, so SysTick counts are instruction counts,
repeatable run to run (not silicon cycles: QEMU models no pipeline or wait states).
"""

from __future__ import annotations

import re
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

from adaptinf.rig.processes import free_port

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware" / "stm32"
FIRMWARE_ELF = FIRMWARE_DIR / "build" / "adaptinf-mcu.elf"


def toolchain_missing() -> str | None:
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs the Debian packages)"
    return None


def build_firmware() -> Path:
    result = subprocess.run(["make", "-C", str(FIRMWARE_DIR)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"firmware build failed:\n{result.stdout}\n{result.stderr}")
    return FIRMWARE_ELF



class QemuMcu:
    """The firmware in QEMU. `reset()`, `pause()` and `resume()` go through QEMU's monitor
    (system_reset, stop, cont): a reset reboots the firmware (its boot HELLO reaches the
    connected host, as a board's would), a paused MCU is one that stopped answering."""

    def __init__(self, elf: Path = FIRMWARE_ELF, serial: str = "tcp"):
        """serial: "tcp" (socket://127.0.0.1:PORT) or "pty" (a /dev/pts/N path, as a board's tty)."""
        self.port, self.monitor_port = free_port(), free_port()
        backend = "pty" if serial == "pty" else f"tcp:127.0.0.1:{self.port},server=on,wait=off,nodelay=on"
        self.process = subprocess.Popen(
            ["qemu-system-arm", "-M", "netduinoplus2", "-nographic",
             "-monitor", f"tcp:127.0.0.1:{self.monitor_port},server=on,wait=off",
             "-icount", "shift=0,sleep=off", "-kernel", str(elf), "-serial", backend],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.url = self._pty_path() if serial == "pty" else self._wait_for_tcp()
        # The port opens before the firmware has enabled its USART (and QEMU drops chardev
        # output while no one reads it): wait until the firmware answers a HELLO.
        from adaptinf.drivers.mcu import McuClient

        with McuClient(self.url) as probe:
            probe.hello(attempts=40, timeout_s=0.25)

    def _wait_for_tcp(self) -> str:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return f"socket://127.0.0.1:{self.port}"
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("QEMU did not open the MCU's serial port") from None
                time.sleep(0.05)

    def _pty_path(self) -> str:
        """QEMU prints "char device redirected to /dev/pts/N (label serial0)" once it has the pty."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not select.select([self.process.stdout], [], [], 0.2)[0]:
                continue
            line = self.process.stdout.readline().decode(errors="replace")
            match = re.search(r"redirected to (/dev/pts/\d+)", line)
            if match:
                return match.group(1)
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError("QEMU did not report its pty")

    def monitor(self, command: str) -> str:
        """One HMP command on QEMU's monitor; returns what it printed."""
        with socket.create_connection(("127.0.0.1", self.monitor_port), timeout=5) as s:
            s.settimeout(0.3)
            out = b""
            s.sendall(command.encode() + b"\n")
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
                    if out.count(b"(qemu)") >= 2:   # the banner's prompt, then the one after our command
                        break
            except socket.timeout:
                pass
        return out.decode(errors="replace")

    def reset(self) -> None:
        self.monitor("system_reset")

    def pause(self) -> None:
        self.monitor("stop")

    def resume(self) -> None:
        self.monitor("cont")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(5)
