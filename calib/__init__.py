"""adaptinf-calib: on-device calibration of every partition, model, link and sensor."""
