"""adaptinf-calib: on-device calibration of every partition, model, link and sensor."""

# What a calibration can measure; `adaptinf-calib --only` takes a subset. Here, not in
# calibrate.py, so the command line parses without the 'calib' extra installed.
COMPONENTS = ("device", "cloud", "link", "confidence", "mcu")
