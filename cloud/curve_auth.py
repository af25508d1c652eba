"""CURVE encryption and per-device authentication for the cloud link (ZeroMQ CURVE + ZAP).

Keys are pyzmq certificate files: `<name>.key` (public) and `<name>.key_secret`
(public + secret), written by `adaptinf keys generate`. The cloud worker holds its own
secret file and a directory of allowed device public keys named `<device-id>.key`.

- The ZAP handler (pyzmq's ThreadAuthenticator) admits a connection only when its key is
  in the allow-list. The socket's ZAP domain and the callback's domain are both
  DOMAIN: a callback registered for "*" would not match a named domain and every client
  would hang with no error (a pyzmq pitfall, see ../shared/notes).
- The ZAP reply's User-Id is the client's key, so the worker checks on every message that
  the key is still allowed (revoking = deleting the file works at once, not at the next
  reconnect) and that it belongs to the device id the message claims (a device cannot
  use another's de-duplication namespace).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

DOMAIN = "adaptinf"


class KeyFileError(ValueError):
    pass


def generate_keypair(directory: Path | str, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write <name>.key and <name>.key_secret in directory; returns (public, secret) paths.

    The directory must exist (a typo must not scatter keys in a new tree), and an existing
    key is kept unless force: overwriting a device's key locks it out of the cloud. The
    secret is created under umask 077, so it is never readable by others, not even briefly.
    """
    if not name or "/" in name or "\\" in name or "\0" in name or name.startswith(".") or name != name.strip():
        raise KeyFileError(f"a key name is a name, not a path: {name!r} (letters, digits, '-' and '_'; the device "
                           "id or 'cloud'); --dir says where the files go")
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(f"{directory}: no such directory; create it first (mkdir -m 700 {directory})")
    existing = [p for p in (directory / f"{name}.key", directory / f"{name}.key_secret") if p.exists()]
    if existing and not force:
        raise KeyFileError(f"{existing[0]} exists; keeping it (replacing a key locks its holder out): "
                           "pass --force to overwrite")
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    os.chmod(public, 0o644)
    return Path(public), Path(secret)


class DeviceAllowList:
    """Allowed device keys: <device-id>.key files in a directory, re-read when it changes."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"allowed-devices directory {self.directory} does not exist")
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._devices: dict[bytes, str] = {}

    def _refresh(self) -> None:
        stamp = self.directory.stat().st_mtime_ns
        if stamp == self._stamp:
            return
        devices = {}
        for path in sorted(self.directory.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(str(path))
            except Exception as exc:    # pyzmq's parser raises IndexError, KeyError, ... on a malformed file
                log.warning("ignoring unreadable device key %s: %s: %s", path, type(exc).__name__, exc)
                continue
            if public is None or len(public) != 40:
                log.warning("ignoring device key %s: no 40-character Z85 public-key line", path)
                continue
            devices[public] = path.stem
        self._devices, self._stamp = devices, stamp

    def device_for(self, z85_key: bytes) -> str | None:
        with self._lock:
            self._refresh()
            return self._devices.get(z85_key)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq credentials-provider hook: key is the client's Z85-encoded public key."""
        allowed = self.device_for(key) is not None
        if not allowed:
            log.warning("refused a CURVE client with an unknown key %s", key[:8])
        return allowed


def start_authenticator(context: zmq.Context, allow_list: DeviceAllowList) -> ThreadAuthenticator:
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain=DOMAIN, credentials_provider=allow_list)
    return auth


def _keypair(secret_file: Path | str) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key (use the .key_secret file)")
    return public, secret


def make_server(socket: zmq.Socket, secret_file: Path | str) -> None:
    public, secret = _keypair(secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    socket.zap_domain = DOMAIN.encode()


def check_client_keys(secret_file: Path | str, server_public_file: Path | str) -> None:
    """KeyFileError naming the setting, when the device's CURVE keys cannot be used: checked at
    start, so a typo is exit 2 with its reason, not a link thread that dies seconds later."""
    for setting, path in (("curve_secret_key", secret_file), ("curve_server_key", server_public_file)):
        try:
            public, secret = zmq.auth.load_certificate(str(path))
        except OSError as exc:
            raise KeyFileError(f"[cloud].{setting} {path}: cannot read it ({exc.strerror or exc})") from None
        except Exception as exc:           # pyzmq's parser on a malformed file
            raise KeyFileError(f"[cloud].{setting} {path}: not a CURVE key file ({type(exc).__name__}: {exc})") \
                from None
        if public is None or len(public) != 40:
            raise KeyFileError(f"[cloud].{setting} {path}: no 40-character Z85 public-key line")
        if setting == "curve_secret_key" and (secret is None or len(secret) != 40):
            raise KeyFileError(f"[cloud].curve_secret_key {path} holds no secret key: give this device's "
                               ".key_secret file, not its .key")


def make_client(socket: zmq.Socket, secret_file: Path | str, server_public_file: Path | str) -> None:
    public, secret = _keypair(secret_file)
    server_public, _ = zmq.auth.load_certificate(str(server_public_file))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
