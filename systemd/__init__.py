"""The systemd unit, udev rules and example config, shipped as package data for `adaptinf install-service`."""
