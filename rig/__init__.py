"""Hardware-in-the-loop rig: emulated links and devices for tests and demos."""
